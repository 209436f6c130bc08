#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    #[pg_test]
    fn uid_role_email_come_from_request_jwt_claims() {
        set_claims(&format!(
            r#"{{"sub":"{ALICE}","role":"authenticated","email":"alice@demo.dana.dev"}}"#
        ));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(ALICE)
        );
        assert_eq!(
            one::<String>("SELECT dana.role()").as_deref(),
            Some("authenticated")
        );
        assert_eq!(
            one::<String>("SELECT dana.email()").as_deref(),
            Some("alice@demo.dana.dev")
        );
        assert_eq!(
            one::<String>("SELECT dana.jwt() ->> 'sub'").as_deref(),
            Some(ALICE)
        );
    }

    #[pg_test]
    fn a_changed_setting_is_seen_by_the_next_statement() {
        set_claims(&claims_of(ALICE));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(ALICE)
        );
        set_claims(&claims_of(BOB));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(BOB)
        );
    }

    #[pg_test]
    fn legacy_claim_settings_are_the_fallback() {
        run(&format!(
            "SELECT set_config('request.jwt.claim.sub', '{BOB}', true)"
        ));
        run("SELECT set_config('request.jwt.claim.role', 'authenticated', true)");
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(BOB)
        );
        assert_eq!(
            one::<String>("SELECT dana.role()").as_deref(),
            Some("authenticated")
        );
        // request.jwt.claims wins when both are set.
        set_claims(&claims_of(ALICE));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(ALICE)
        );
    }

    #[pg_test]
    fn absent_empty_or_malformed_claims_give_null_not_errors() {
        for raw in [
            "",
            "{not json",
            "[1,2]",
            r#"{"sub":"not-a-uuid","app_metadata":{"tenant_id":42}}"#,
        ] {
            set_claims(raw);
            assert_eq!(one::<String>("SELECT dana.uid()::text"), None, "{raw}");
            assert_eq!(
                one::<String>("SELECT dana.tenant_id()::text"),
                None,
                "{raw}"
            );
            assert_eq!(one::<bool>("SELECT dana.is_admin()"), Some(false), "{raw}");
            assert_eq!(
                one::<bool>("SELECT dana.has_role('admin')"),
                Some(false),
                "{raw}"
            );
        }
        set_claims("{not json");
        assert_eq!(one::<pgrx::JsonB>("SELECT dana.jwt()").map(|j| j.0), None);
    }

    #[pg_test]
    fn a_tenant_admin_is_an_admin_of_that_tenant_only() {
        set_claims(&format!(
            r#"{{"sub":"{ALICE}","role":"authenticated",
                "app_metadata":{{"tenant_id":"10000000-0000-4000-8000-000000000001","role":"admin","roles":["editor"]}}}}"#
        ));
        assert_eq!(
            one::<String>("SELECT dana.tenant_id()::text").as_deref(),
            Some("10000000-0000-4000-8000-000000000001")
        );
        assert_eq!(
            one::<String>("SELECT dana.tenant_role()").as_deref(),
            Some("admin")
        );
        assert_eq!(one::<bool>("SELECT dana.is_tenant_admin()"), Some(true));
        assert_eq!(one::<bool>("SELECT dana.is_tenant_owner()"), Some(false));
        assert_eq!(one::<bool>("SELECT dana.is_platform_admin()"), Some(false));
        assert_eq!(
            one::<bool>("SELECT dana.is_admin()"),
            Some(false),
            "the old name means the platform now"
        );
        assert_eq!(one::<bool>("SELECT dana.has_role('editor')"), Some(true));
        assert_eq!(one::<bool>("SELECT dana.has_role('owner')"), Some(false));
        assert_eq!(one::<bool>("SELECT dana.has_role(NULL)"), None);
        set_claims(r#"{"role":"service_role"}"#);
        assert_eq!(one::<bool>("SELECT dana.is_platform_admin()"), Some(true));
        assert_eq!(one::<bool>("SELECT dana.is_tenant_admin()"), Some(false));
        set_claims(&format!(
            r#"{{"sub":"{BOB}","role":"authenticated","app_metadata":{{"platform_admin":true}}}}"#
        ));
        assert_eq!(one::<bool>("SELECT dana.is_platform_admin()"), Some(true));
        set_claims(&claims_of(BOB));
        assert_eq!(
            one::<bool>("SELECT dana.is_platform_admin() OR dana.is_tenant_admin()"),
            Some(false)
        );
    }

    /// The memo of resolved claims must follow the setting on every path, not only statements
    /// that pass through the executor: utility SETs, DO and CALL bodies, PL/pgSQL expressions.
    #[pg_test]
    fn a_changed_setting_is_seen_on_every_path() {
        run("CREATE TABLE public.seen (who text)");
        run("CREATE PROCEDURE public.remember(who uuid) LANGUAGE sql AS 'INSERT INTO public.seen VALUES (who::text)'");
        run(&format!(
            "SET LOCAL request.jwt.claims = '{}'",
            claims_of(ALICE)
        ));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(ALICE)
        );
        // The issue's reproduction: a utility SET, then a DO body.
        run(&format!(
            "SET LOCAL request.jwt.claims = '{}'",
            claims_of(BOB)
        ));
        run("DO $$ BEGIN INSERT INTO public.seen VALUES (dana.uid()::text); END $$");
        // A CALL argument, right after another utility SET.
        run(&format!(
            "SET LOCAL request.jwt.claims = '{}'",
            claims_of(ALICE)
        ));
        run("CALL public.remember(dana.uid())");
        // Inside one PL/pgSQL block, a set_config() followed by an expression (no executor start).
        run(&format!(
            "DO $$ BEGIN PERFORM set_config('request.jwt.claims', '{}', true);
                        INSERT INTO public.seen VALUES (dana.uid()::text); END $$",
            claims_of(BOB)
        ));
        assert_eq!(
            crate::tests::strings("SELECT who FROM public.seen"),
            [BOB, ALICE, BOB]
        );
    }

    #[pg_test]
    fn a_rolled_back_subtransaction_restores_the_identity() {
        set_claims(&claims_of(ALICE));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(ALICE)
        );
        // Set Bob inside a subtransaction that fails: PostgreSQL restores Alice, and so must we.
        let err = error_of(&format!(
            "DO $$ BEGIN PERFORM set_config('request.jwt.claims', '{}', true);
                        PERFORM dana.uid(); RAISE EXCEPTION 'undo'; END $$",
            claims_of(BOB)
        ));
        assert!(err.unwrap().contains("undo"));
        assert_eq!(
            one::<String>("SELECT dana.uid()::text").as_deref(),
            Some(ALICE)
        );
    }

    #[pg_test]
    fn an_unwrapped_uid_sees_each_statements_user_on_every_row() {
        // dana.uid() per row answers from statics kept beside the memo (claims.rs).
        run("CREATE TABLE public.owned (owner uuid)");
        run(&format!(
            "INSERT INTO public.owned SELECT CASE WHEN i % 3 = 0 THEN '{ALICE}'::uuid
               ELSE '{BOB}'::uuid END FROM generate_series(1, 300) i"
        ));
        let count = || one::<i64>("SELECT count(*) FROM public.owned WHERE owner = dana.uid()");
        set_claims(&claims_of(ALICE));
        assert_eq!(count(), Some(100));
        set_claims(&claims_of(BOB));
        assert_eq!(count(), Some(200));
        set_claims(r#"{"role":"anon"}"#);
        assert_eq!(count(), Some(0));
        set_claims(&claims_of(ALICE));
        assert_eq!(count(), Some(100));
    }

    #[pg_test]
    fn helpers_are_stable_and_parallel_safe() {
        let bad = one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'dana'::regnamespace
               AND proname IN ('jwt','uid','role','email','tenant_id','is_admin','has_role')
               AND (provolatile <> 's' OR proparallel <> 's')",
        );
        assert_eq!(bad, Some(0));
    }
}
