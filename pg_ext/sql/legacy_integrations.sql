-- The old design's table `public.integrations_config`: its rows move into
-- public.integration_configs through the guard trigger (so secrets get validated and encrypted),
-- and the old table leaves the exposed schema for dana_meta, where nothing the API can reach
-- holds secrets in clear. A row the guard refuses is kept, with the reason, in
-- dana_meta.integrations_config_rejects: nothing is lost. Safe to call again: it does nothing
-- once the old table is gone.
CREATE FUNCTION dana.migrate_legacy_integrations_config()
RETURNS TABLE(moved bigint, rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
  legacy jsonb;
  n_moved bigint := 0;
  n_rejected bigint := 0;
BEGIN
  IF to_regclass('public.integrations_config') IS NULL THEN
    RETURN QUERY SELECT 0::bigint, 0::bigint;
    RETURN;
  END IF;
  CREATE SCHEMA IF NOT EXISTS dana_meta;
  CREATE TABLE IF NOT EXISTS dana_meta.integrations_config_rejects (
    legacy_row jsonb NOT NULL,
    reason text NOT NULL,
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
      INSERT INTO dana_meta.integrations_config_rejects (legacy_row, reason) VALUES (legacy, SQLERRM);
      n_rejected := n_rejected + 1;
    END;
  END LOOP;
  IF to_regclass('dana_meta.integrations_config') IS NULL THEN
    ALTER TABLE public.integrations_config SET SCHEMA dana_meta;
  ELSE
    ALTER TABLE public.integrations_config RENAME TO integrations_config_legacy;
    ALTER TABLE public.integrations_config_legacy SET SCHEMA dana_meta;
  END IF;
  RETURN QUERY SELECT n_moved, n_rejected;
END $$;
COMMENT ON FUNCTION dana.migrate_legacy_integrations_config() IS
  'Moves rows of the legacy table public.integrations_config into public.integration_configs (validated, secrets encrypted, status pending until re-verified); refused rows go to dana_meta.integrations_config_rejects; the old table moves to schema dana_meta.';
