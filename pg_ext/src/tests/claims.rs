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
    fn tenant_admin_and_roles_come_from_app_metadata() {
        set_claims(&format!(
            r#"{{"sub":"{ALICE}","role":"authenticated",
                "app_metadata":{{"tenant_id":"10000000-0000-4000-8000-000000000001","role":"admin","roles":["editor"]}}}}"#
        ));
        assert_eq!(
            one::<String>("SELECT dana.tenant_id()::text").as_deref(),
            Some("10000000-0000-4000-8000-000000000001")
        );
        assert_eq!(one::<bool>("SELECT dana.is_admin()"), Some(true));
        assert_eq!(one::<bool>("SELECT dana.has_role('editor')"), Some(true));
        assert_eq!(one::<bool>("SELECT dana.has_role('owner')"), Some(false));
        assert_eq!(one::<bool>("SELECT dana.has_role(NULL)"), None);
        set_claims(r#"{"role":"service_role"}"#);
        assert_eq!(one::<bool>("SELECT dana.is_admin()"), Some(true));
        set_claims(&claims_of(BOB));
        assert_eq!(one::<bool>("SELECT dana.is_admin()"), Some(false));
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
