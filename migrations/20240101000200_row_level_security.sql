-- Row level security on every table of the exposed schema, through dana's policy sets where one
-- fits and with hand-written policies where a table's rules are its own.

-- Each user's own rows.
SELECT dana.enable_owner_rls(t) FROM unnest(ARRAY[
  'public.user_settings', 'public.user_memory', 'public.api_keys', 'public.agents',
  'public.agent_tools', 'public.tasks', 'public.conversations', 'public.messages',
  'public.knowledge_files', 'public.documents', 'public.document_chunks',
  'public.document_conversation_links', 'public.integration_configs'
]::regclass[]) t;
SELECT dana.enable_owner_rls('public.profiles', 'id');

-- Organisation: readable by the tenant, each member edits what they created.
SELECT dana.enable_tenant_rls(t, 'tenant_id', 'created_by') FROM unnest(ARRAY[
  'public.departments', 'public.organizational_roles', 'public.business_functions'
]::regclass[]) t;

-- Catalogues: everyone reads, admins write.
SELECT dana.enable_admin_write_rls(t) FROM unnest(ARRAY[
  'public.subscription_tiers', 'public.tools'
]::regclass[]) t;

-- Subscriptions and usage are written by billing and the BFF (service role); users read theirs.
ALTER TABLE public.user_subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY subscriptions_read ON public.user_subscriptions FOR SELECT TO authenticated
  USING (user_id = (SELECT dana.uid()) OR (SELECT dana.is_admin()));
CREATE POLICY subscriptions_admin_insert ON public.user_subscriptions FOR INSERT TO authenticated
  WITH CHECK ((SELECT dana.is_admin()));
CREATE POLICY subscriptions_admin_update ON public.user_subscriptions FOR UPDATE TO authenticated
  USING ((SELECT dana.is_admin())) WITH CHECK ((SELECT dana.is_admin()));
CREATE POLICY subscriptions_admin_delete ON public.user_subscriptions FOR DELETE TO authenticated
  USING ((SELECT dana.is_admin()));

ALTER TABLE public.api_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_usage_owner_read ON public.api_usage FOR SELECT TO authenticated
  USING (user_id = (SELECT dana.uid()));

-- Tenants: members read their tenant; tenant admins rename it. Creating and deleting tenants
-- is the service role's job.
ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenants_member_read ON public.tenants FOR SELECT TO authenticated
  USING (id = (SELECT dana.tenant_id()));
CREATE POLICY tenants_admin_update ON public.tenants FOR UPDATE TO authenticated
  USING (id = (SELECT dana.tenant_id()) AND (SELECT dana.is_admin()))
  WITH CHECK (id = (SELECT dana.tenant_id()) AND (SELECT dana.is_admin()));

ALTER TABLE public.tenant_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_members_member_read ON public.tenant_members FOR SELECT TO authenticated
  USING (tenant_id = (SELECT dana.tenant_id()));
CREATE POLICY tenant_members_admin_insert ON public.tenant_members FOR INSERT TO authenticated
  WITH CHECK (tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_admin()));
CREATE POLICY tenant_members_admin_update ON public.tenant_members FOR UPDATE TO authenticated
  USING (tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_admin()))
  WITH CHECK (tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_admin()));
CREATE POLICY tenant_members_admin_delete ON public.tenant_members FOR DELETE TO authenticated
  USING (tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_admin()));

-- RPCs for supabase-js (schema dana is not exposed).
CREATE FUNCTION public.upsert_integration_config(integration_type text, config jsonb)
RETURNS SETOF public.integration_configs
LANGUAGE sql VOLATILE SECURITY INVOKER AS $$
  SELECT c.* FROM public.integration_configs c
   WHERE c.id = dana.upsert_integration_config($1, $2)
$$;
COMMENT ON FUNCTION public.upsert_integration_config(text, jsonb) IS
  'Creates or replaces the signed-in user''s config of one integration type (secrets in clear inside config; they are stored encrypted and come back masked).';

CREATE FUNCTION public.integration_types()
RETURNS TABLE(integration_type text, field text, required boolean, secret boolean)
LANGUAGE sql IMMUTABLE AS $$ SELECT * FROM dana.integration_types() $$;
COMMENT ON FUNCTION public.integration_types() IS 'The supported integration types and their fields.';
