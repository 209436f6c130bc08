-- The old design's table `public.integrations_config`: its rows move into
-- public.integration_configs through the guard trigger (so secrets get validated and encrypted).
-- A row the guard refuses is kept in dana_meta.integrations_config_rejects, sealed with the same
-- keys as every other secret (the reason and the row's id, user and type stay readable): nothing
-- is lost, and nothing leaves in clear. Once every row is accounted for, the old table — secrets
-- in clear — is dropped. Safe to call again: it does nothing once the old table is gone.
CREATE FUNCTION dana.migrate_legacy_integrations_config()
RETURNS TABLE(moved bigint, rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
  legacy jsonb;
  reject_id uuid;
  sealed record;
  n_moved bigint := 0;
  n_rejected bigint := 0;
BEGIN
  IF to_regclass('public.integrations_config') IS NULL THEN
    RETURN QUERY SELECT 0::bigint, 0::bigint;
    RETURN;
  END IF;
  CREATE SCHEMA IF NOT EXISTS dana_meta;
  CREATE TABLE IF NOT EXISTS dana_meta.integrations_config_rejects (
    id uuid PRIMARY KEY,
    legacy_id text,
    user_id text,
    integration_type text,
    reason text NOT NULL,
    sealed_row bytea NOT NULL,
    key_version integer NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
  );
  FOR legacy IN EXECUTE 'SELECT to_jsonb(l) FROM public.integrations_config l' LOOP
    BEGIN
      INSERT INTO public.integration_configs (id, user_id, integration_type, config)
      VALUES (coalesce((legacy ->> 'id')::uuid, gen_random_uuid()),
              (legacy ->> 'user_id')::uuid,
              coalesce(legacy ->> 'integration_type', legacy ->> 'type', legacy ->> 'provider'),
              coalesce(legacy -> 'config', legacy -> 'settings', '{}'::jsonb));
      n_moved := n_moved + 1;
    EXCEPTION WHEN OTHERS THEN
      reject_id := gen_random_uuid();
      SELECT * INTO sealed FROM dana.seal_archived(reject_id, legacy);
      INSERT INTO dana_meta.integrations_config_rejects
             (id, legacy_id, user_id, integration_type, reason, sealed_row, key_version)
      VALUES (reject_id, legacy ->> 'id', legacy ->> 'user_id',
              coalesce(legacy ->> 'integration_type', legacy ->> 'type', legacy ->> 'provider'),
              SQLERRM, sealed.sealed, sealed.key_version);
      n_rejected := n_rejected + 1;
    END;
  END LOOP;
  DROP TABLE public.integrations_config;
  RETURN QUERY SELECT n_moved, n_rejected;
END $$;
COMMENT ON FUNCTION dana.migrate_legacy_integrations_config() IS
  'Moves rows of the legacy table public.integrations_config into public.integration_configs (validated, secrets encrypted, status pending until re-verified); refused rows are kept sealed in dana_meta.integrations_config_rejects (read one back with dana.archived_legacy_integration(id), service role); then drops the old table.';
