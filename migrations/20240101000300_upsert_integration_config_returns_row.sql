-- public.upsert_integration_config returned no row for a config it had just created: as one SQL
-- statement, the outer SELECT ran on a snapshot taken before dana.upsert_integration_config()
-- inserted. PL/pgSQL takes a fresh snapshot per statement, so the row is visible to the second.
CREATE OR REPLACE FUNCTION public.upsert_integration_config(integration_type text, config jsonb)
RETURNS SETOF public.integration_configs
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
#variable_conflict use_column
DECLARE
  saved_id uuid;
BEGIN
  saved_id := dana.upsert_integration_config($1, $2);
  RETURN QUERY SELECT c.* FROM public.integration_configs c WHERE c.id = saved_id;
END
$$;
