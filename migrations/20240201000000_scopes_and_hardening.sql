-- Roles that hold. Every role has a scope — a user their own rows, a tenant admin their own
-- tenant, the platform everything — and no policy lets a narrower role reach a wider scope.
--
--   platform admin  dana.is_platform_admin(): the service role, or app_metadata.platform_admin
--                   (only the service role writes app_metadata). Catalogues, every user's
--                   subscriptions and usage.
--   tenant admin    dana.is_tenant_admin(): app_metadata.role owner/admin, in the tenant
--                   app_metadata.tenant_id and nowhere else. dana.is_tenant_owner() for owners.
--
-- Before this migration dana.is_admin() (app_metadata.role = 'admin') served both: a tenant's
-- admin could change every customer's price and cancel other tenants' subscriptions.

-- The BFF's own login: least privilege, no superuser, a connection limit set by whoever gives it
-- a password (scripts/dev up does; on Supabase, ALTER ROLE dana_bff LOGIN PASSWORD '…').
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dana_bff') THEN
    CREATE ROLE dana_bff NOLOGIN NOINHERIT;
  END IF;
END $$;

-- Functions: the extension grants API roles only the claim helpers and the user-facing calls;
-- the blanket grant of the first migration is taken back. The service role gets its own three.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA dana FROM anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION dana.integration_secrets(uuid),
                          dana.record_integration_verification(uuid, boolean, text),
                          dana.rotate_integration_secrets()
  TO service_role;

-- Catalogues: platform admins write (the policy set now says is_platform_admin()).
SELECT dana.enable_admin_write_rls(t) FROM unnest(ARRAY[
  'public.subscription_tiers', 'public.tools'
]::regclass[]) t;

-- Organisation: inside the tenant, members edit what they created, the tenant's admins all.
SELECT dana.enable_tenant_rls(t, 'tenant_id', 'created_by') FROM unnest(ARRAY[
  'public.departments', 'public.organizational_roles', 'public.business_functions'
]::regclass[]) t;

-- Subscriptions and usage: users read theirs, platform admins read and write everyone's.
DROP POLICY subscriptions_read ON public.user_subscriptions;
DROP POLICY subscriptions_admin_insert ON public.user_subscriptions;
DROP POLICY subscriptions_admin_update ON public.user_subscriptions;
DROP POLICY subscriptions_admin_delete ON public.user_subscriptions;
CREATE POLICY subscriptions_read ON public.user_subscriptions FOR SELECT TO authenticated
  USING (user_id = (SELECT dana.uid()) OR (SELECT dana.is_platform_admin()));
CREATE POLICY subscriptions_platform_insert ON public.user_subscriptions FOR INSERT TO authenticated
  WITH CHECK ((SELECT dana.is_platform_admin()));
CREATE POLICY subscriptions_platform_update ON public.user_subscriptions FOR UPDATE TO authenticated
  USING ((SELECT dana.is_platform_admin())) WITH CHECK ((SELECT dana.is_platform_admin()));
CREATE POLICY subscriptions_platform_delete ON public.user_subscriptions FOR DELETE TO authenticated
  USING ((SELECT dana.is_platform_admin()));

DROP POLICY api_usage_owner_read ON public.api_usage;
CREATE POLICY api_usage_read ON public.api_usage FOR SELECT TO authenticated
  USING (user_id = (SELECT dana.uid()) OR (SELECT dana.is_platform_admin()));

-- Tenants: members read theirs; its admins rename it (name and slug only).
DROP POLICY tenants_admin_update ON public.tenants;
CREATE POLICY tenants_admin_update ON public.tenants FOR UPDATE TO authenticated
  USING (id = (SELECT dana.tenant_id()) AND (SELECT dana.is_tenant_admin()))
  WITH CHECK (id = (SELECT dana.tenant_id()) AND (SELECT dana.is_tenant_admin()));
REVOKE INSERT, UPDATE, DELETE ON public.tenants FROM anon, authenticated;
GRANT UPDATE (name, slug) ON public.tenants TO authenticated;

-- Membership ------------------------------------------------------------------------------------
-- A tenant's admins invite by e-mail; the invitee joins by accepting (rpc accept_tenant_invitation,
-- or inserting their own membership while the invitation is valid). Nobody adds another user
-- directly. Owners are made only by owners (or the platform): admins neither invite owners, nor
-- promote anyone (themselves included) to owner, nor touch an owner's membership.
CREATE TABLE public.tenant_invitations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email) AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'),
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
  invited_by uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL DEFAULT now() + interval '7 days',
  UNIQUE (tenant_id, email)
);
CREATE INDEX tenant_invitations_invited_by_idx ON public.tenant_invitations (invited_by);
CREATE INDEX tenant_invitations_email_idx ON public.tenant_invitations (email);
SELECT dana.track_timestamps('public.tenant_invitations');
ALTER TABLE public.tenant_invitations ENABLE ROW LEVEL SECURITY;
CREATE POLICY invitations_read ON public.tenant_invitations FOR SELECT TO authenticated
  USING ((tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_tenant_admin()))
         OR email = lower((SELECT dana.email())));
CREATE POLICY invitations_admin_insert ON public.tenant_invitations FOR INSERT TO authenticated
  WITH CHECK (tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_tenant_admin())
              AND invited_by = (SELECT dana.uid())
              AND (role <> 'owner' OR (SELECT dana.is_tenant_owner()))
              AND expires_at <= now() + interval '30 days');
-- Withdrawn by the tenant's admins, declined (or consumed) by the invitee.
CREATE POLICY invitations_delete ON public.tenant_invitations FOR DELETE TO authenticated
  USING ((tenant_id = (SELECT dana.tenant_id()) AND (SELECT dana.is_tenant_admin())
          AND (role <> 'owner' OR (SELECT dana.is_tenant_owner())))
         OR email = lower((SELECT dana.email())));
REVOKE UPDATE ON public.tenant_invitations FROM anon, authenticated;

DROP POLICY tenant_members_member_read ON public.tenant_members;
DROP POLICY tenant_members_admin_insert ON public.tenant_members;
DROP POLICY tenant_members_admin_update ON public.tenant_members;
DROP POLICY tenant_members_admin_delete ON public.tenant_members;
CREATE POLICY tenant_members_read ON public.tenant_members FOR SELECT TO authenticated
  USING (tenant_id = (SELECT dana.tenant_id()) OR user_id = (SELECT dana.uid()));
CREATE POLICY tenant_members_join_by_invitation ON public.tenant_members FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT dana.uid())
              AND EXISTS (SELECT 1 FROM public.tenant_invitations i
                           WHERE i.tenant_id = tenant_members.tenant_id
                             AND i.email = lower((SELECT dana.email()))
                             AND i.role = tenant_members.role
                             AND i.expires_at > now()));
CREATE POLICY tenant_members_admin_update ON public.tenant_members FOR UPDATE TO authenticated
  USING (tenant_id = (SELECT dana.tenant_id())
         AND ((SELECT dana.is_tenant_owner()) OR ((SELECT dana.is_tenant_admin()) AND role <> 'owner')))
  WITH CHECK (tenant_id = (SELECT dana.tenant_id())
              AND ((SELECT dana.is_tenant_owner()) OR ((SELECT dana.is_tenant_admin()) AND role <> 'owner')));
CREATE POLICY tenant_members_delete ON public.tenant_members FOR DELETE TO authenticated
  USING ((tenant_id = (SELECT dana.tenant_id())
          AND ((SELECT dana.is_tenant_owner()) OR ((SELECT dana.is_tenant_admin()) AND role <> 'owner')))
         OR (user_id = (SELECT dana.uid()) AND role <> 'owner'));
-- Only the role of a membership changes; who and where are fixed.
REVOKE UPDATE ON public.tenant_members FROM anon, authenticated;
GRANT UPDATE (role) ON public.tenant_members TO authenticated;

-- Joining consumes the invitation (as the invitee, whose policy lets them delete it). Rows the
-- platform inserts for someone else leave invitations alone.
CREATE FUNCTION dana_meta.consume_tenant_invitation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.user_id = dana.uid() THEN
    DELETE FROM public.tenant_invitations
     WHERE tenant_id = NEW.tenant_id AND email = lower(dana.email());
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER consume_tenant_invitation AFTER INSERT ON public.tenant_members
  FOR EACH ROW EXECUTE FUNCTION dana_meta.consume_tenant_invitation();

CREATE FUNCTION public.accept_tenant_invitation(invitation_id uuid)
RETURNS SETOF public.tenant_members
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
  invitation public.tenant_invitations;
BEGIN
  SELECT * INTO invitation FROM public.tenant_invitations i
   WHERE i.id = invitation_id AND i.email = lower(dana.email());
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no invitation % for %', invitation_id, coalesce(dana.email(), 'this caller')
      USING ERRCODE = 'PT404', HINT = 'Invitations are addressed to the e-mail of the signed-in user.';
  END IF;
  IF invitation.expires_at <= now() THEN
    RAISE EXCEPTION 'invitation % expired at %', invitation_id, invitation.expires_at
      USING ERRCODE = '22023', HINT = 'Ask the tenant''s admins for a new invitation.';
  END IF;
  RETURN QUERY INSERT INTO public.tenant_members (tenant_id, user_id, role)
    VALUES (invitation.tenant_id, dana.uid(), invitation.role) RETURNING *;
END $$;
COMMENT ON FUNCTION public.accept_tenant_invitation(uuid) IS
  'Joins the tenant of an invitation addressed to the signed-in user''s e-mail, with the invited role; the invitation is consumed.';

-- API keys --------------------------------------------------------------------------------------
-- Created and revoked through dana.create_api_key() / dana.revoke_api_key() (the key shown once,
-- only its hash kept); the guard refuses every other write by an API role: no un-revoking, no
-- new expiry, no scopes of one's own choosing.
CREATE TRIGGER api_keys_guard BEFORE INSERT OR UPDATE OR DELETE ON public.api_keys
  FOR EACH ROW EXECUTE FUNCTION dana.api_keys_guard();
CREATE FUNCTION public.create_api_key(name text, scopes text[] DEFAULT '{read}', expires_in_days integer DEFAULT 90)
RETURNS TABLE(id uuid, key text, key_prefix text, scopes text[], expires_at timestamptz)
LANGUAGE sql VOLATILE SECURITY INVOKER AS $$
  SELECT * FROM dana.create_api_key($1, $2, $3)
$$;
COMMENT ON FUNCTION public.create_api_key(text, text[], integer) IS
  'Creates an API key for the signed-in user and returns it once (only its hash is stored). Scopes: read, write. Expires in 1 to 365 days (default 90).';
CREATE FUNCTION public.revoke_api_key(key_id uuid)
RETURNS timestamptz
LANGUAGE sql VOLATILE SECURITY INVOKER AS $$
  SELECT dana.revoke_api_key($1)
$$;
COMMENT ON FUNCTION public.revoke_api_key(uuid) IS 'Revokes one of the signed-in user''s API keys for good; returns when.';

-- Cross-tenant links ------------------------------------------------------------------------------
-- A role or function may only hang under a department of its own tenant (and a foreign id gets
-- the same refusal whether or not it exists elsewhere).
ALTER TABLE public.departments ADD CONSTRAINT departments_id_tenant_id_key UNIQUE (id, tenant_id);
ALTER TABLE public.organizational_roles
  DROP CONSTRAINT organizational_roles_department_id_fkey,
  ADD CONSTRAINT organizational_roles_department_fkey FOREIGN KEY (department_id, tenant_id)
    REFERENCES public.departments (id, tenant_id) ON DELETE SET NULL (department_id);
ALTER TABLE public.business_functions
  DROP CONSTRAINT business_functions_department_id_fkey,
  ADD CONSTRAINT business_functions_department_fkey FOREIGN KEY (department_id, tenant_id)
    REFERENCES public.departments (id, tenant_id) ON DELETE SET NULL (department_id);
DROP INDEX public.organizational_roles_department_id_idx;
DROP INDEX public.business_functions_department_id_idx;
CREATE INDEX organizational_roles_department_id_tenant_id_idx ON public.organizational_roles (department_id, tenant_id);
CREATE INDEX business_functions_department_id_tenant_id_idx ON public.business_functions (department_id, tenant_id);

-- Messages ----------------------------------------------------------------------------------------
-- Users write what they say (role 'user'); assistant, system and tool messages are written by the
-- service role only, so nobody forges what the agent said or instructs it through a system line.
CREATE POLICY messages_users_write_user_messages ON public.messages AS RESTRICTIVE
  FOR INSERT TO authenticated WITH CHECK (role = 'user');
CREATE POLICY messages_users_edit_user_messages ON public.messages AS RESTRICTIVE
  FOR UPDATE TO authenticated USING (role = 'user') WITH CHECK (role = 'user');
