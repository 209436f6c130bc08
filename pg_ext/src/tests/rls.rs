#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    fn notes_table() {
        run("CREATE TABLE public.notes (id serial PRIMARY KEY, user_id uuid NOT NULL, tenant_id uuid, body text)");
        run(&format!(
            "INSERT INTO public.notes (user_id, body) VALUES ('{ALICE}', 'alice''s'), ('{BOB}', 'bob''s')"
        ));
    }

    fn policies(table: &str) -> Vec<String> {
        crate::tests::strings_with_args(
            "SELECT polname::text FROM pg_policy WHERE polrelid = $1::regclass ORDER BY 1",
            &[table.into()],
        )
    }

    #[pg_test]
    fn owner_rls_applies_a_complete_set_once() {
        notes_table();
        let did = one::<i64>("SELECT count(*) FROM dana.enable_owner_rls('public.notes')");
        // enable RLS, four policies, one index
        assert_eq!(did, Some(6));
        assert_eq!(
            policies("public.notes"),
            [
                "dana_owner_delete",
                "dana_owner_insert",
                "dana_owner_select",
                "dana_owner_update"
            ]
        );
        assert_eq!(
            one::<String>("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'dana_owner_select'").as_deref(),
            Some("(user_id = ( SELECT dana.uid() AS uid))")
        );
        assert_eq!(
            one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'notes_user_id_idx')"
            ),
            Some(true)
        );
        // Idempotent: the second call changes nothing and says so.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM dana.enable_owner_rls('public.notes')"),
            Some(0)
        );
    }

    #[pg_test]
    fn owner_policies_isolate_users() {
        notes_table();
        run("SELECT dana.enable_owner_rls('public.notes')");
        run("CREATE ROLE dana_test_api NOLOGIN");
        run("GRANT ALL ON public.notes TO dana_test_api");
        run("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO dana_test_api");
        run("GRANT USAGE ON SCHEMA dana, tests TO dana_test_api");
        set_claims(&claims_of(ALICE));
        run("SET LOCAL ROLE dana_test_api");
        assert_eq!(
            one::<String>("SELECT string_agg(body, ',') FROM public.notes").as_deref(),
            Some("alice's")
        );
        assert_eq!(one::<i64>("WITH d AS (DELETE FROM public.notes WHERE body = 'bob''s' RETURNING 1) SELECT count(*) FROM d"), Some(0));
        assert_eq!(one::<i64>("WITH u AS (UPDATE public.notes SET body = 'x' WHERE body = 'bob''s' RETURNING 1) SELECT count(*) FROM u"), Some(0));
        let err = error_of(&format!(
            "INSERT INTO public.notes (user_id, body) VALUES ('{BOB}', 'forged')"
        ))
        .unwrap();
        assert!(
            err.starts_with("42501: new row violates row-level security policy"),
            "{err}"
        );
        let err = error_of(&format!("UPDATE public.notes SET user_id = '{BOB}'")).unwrap();
        assert!(err.starts_with("42501"), "{err}");
        run("RESET ROLE");
    }

    #[pg_test]
    fn bad_arguments_name_the_table_and_column() {
        notes_table();
        let err = error_of("SELECT dana.enable_owner_rls('public.notes', 'owner_id')").unwrap();
        assert_eq!(
            err,
            "42703: dana: table notes has no column \"owner_id\" (the owner column)"
        );
        // The hint says what the argument is for, in plain words.
        let hint = one::<String>(
            "DO $$ BEGIN PERFORM dana.enable_owner_rls('public.notes', 'nope');
               EXCEPTION WHEN OTHERS THEN
                 DECLARE h text; BEGIN GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
                   PERFORM set_config('dana_test.hint', h, true); END; END $$;
             SELECT current_setting('dana_test.hint')",
        );
        assert_eq!(
            hint.as_deref(),
            Some("The owner column is the uuid column of notes that holds the id of the user who owns each row (compared with dana.uid()). Pass the name of that column.")
        );
        let err = error_of("SELECT dana.enable_owner_rls('public.notes', 'body')").unwrap();
        assert_eq!(err, "42804: dana: column \"body\" of table notes has type text, but the owner column must be uuid");
        let err = error_of("SELECT dana.enable_tenant_rls('public.notes', 'nope')").unwrap();
        assert!(
            err.contains("has no column \"nope\" (the tenant column)"),
            "{err}"
        );
        let err = error_of("SELECT dana.enable_owner_rls('public.no_such_table')").unwrap();
        assert!(err.starts_with("42P01"), "{err}");
        run("CREATE VIEW public.notes_view AS SELECT * FROM public.notes");
        let err = error_of("SELECT dana.enable_public_read_rls('public.notes_view')").unwrap();
        assert_eq!(err, "42809: dana: notes_view is not a table");
    }

    #[pg_test]
    fn switching_policy_sets_leaves_no_policy_of_the_old_one() {
        notes_table();
        run("SELECT dana.enable_public_read_rls('public.notes')");
        assert_eq!(
            policies("public.notes"),
            [
                "dana_public_delete",
                "dana_public_insert",
                "dana_public_select",
                "dana_public_update"
            ]
        );
        let did: Vec<String> = crate::tests::strings(
            "SELECT action || ' ' || object FROM dana.enable_admin_write_rls('public.notes')",
        );
        assert!(
            did.contains(&"drop policy dana_public_insert on notes".to_string()),
            "{did:?}"
        );
        assert_eq!(
            policies("public.notes"),
            [
                "dana_admin_delete",
                "dana_admin_insert",
                "dana_admin_select",
                "dana_admin_update"
            ]
        );
        assert_eq!(
            one::<String>("SELECT pg_get_expr(polwithcheck, polrelid) FROM pg_policy WHERE polname = 'dana_admin_insert'").as_deref(),
            Some("( SELECT dana.is_platform_admin() AS is_platform_admin)")
        );
        // A user's own policy is never touched.
        run("CREATE POLICY my_policy ON public.notes FOR SELECT USING (true)");
        run("SELECT dana.enable_owner_rls('public.notes')");
        assert!(policies("public.notes").contains(&"my_policy".to_string()));
    }

    #[pg_test]
    fn tenant_rls_reads_the_tenant_and_writes_own_rows() {
        notes_table();
        run("SELECT dana.enable_tenant_rls('public.notes', 'tenant_id', 'user_id')");
        assert_eq!(
            one::<String>("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'dana_tenant_select'").as_deref(),
            Some("(tenant_id = ( SELECT dana.tenant_id() AS tenant_id))")
        );
        assert_eq!(
            one::<String>("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'dana_tenant_update'").as_deref(),
            Some("((tenant_id = ( SELECT dana.tenant_id() AS tenant_id)) AND ((user_id = ( SELECT dana.uid() AS uid)) OR ( SELECT dana.is_tenant_admin() AS is_tenant_admin)))")
        );
        // Without an owner column, only the tenant's admins write.
        run("SELECT dana.enable_tenant_rls('public.notes', 'tenant_id')");
        assert_eq!(
            one::<String>("SELECT pg_get_expr(polwithcheck, polrelid) FROM pg_policy WHERE polname = 'dana_tenant_insert'").as_deref(),
            Some("((tenant_id = ( SELECT dana.tenant_id() AS tenant_id)) AND ( SELECT dana.is_tenant_admin() AS is_tenant_admin))")
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_indexes WHERE tablename = 'notes' AND indexname IN ('notes_tenant_id_idx', 'notes_user_id_idx')"), Some(2));
    }

    #[pg_test]
    fn rls_audit_reports_each_kind_of_gap() {
        run("CREATE SCHEMA audited");
        run("CREATE TABLE audited.open_table (id int)");
        run("CREATE TABLE audited.locked (id int)");
        run("ALTER TABLE audited.locked ENABLE ROW LEVEL SECURITY");
        run("CREATE TABLE audited.slow (id int, owner uuid)");
        run("ALTER TABLE audited.slow ENABLE ROW LEVEL SECURITY");
        run("CREATE POLICY per_row ON audited.slow FOR SELECT USING (owner = dana.uid())");
        run(
            "CREATE POLICY also_select ON audited.slow FOR ALL USING (owner = (select dana.uid()))",
        );
        run("CREATE TABLE audited.fine (id int, owner uuid)");
        run("SELECT dana.enable_owner_rls('audited.fine', 'owner')");
        // Columns of a restrictive policy, of a WITH CHECK, or beside an indexed one: not gaps.
        run("CREATE TABLE audited.narrowed (id int, owner uuid, kind text)");
        run("SELECT dana.enable_owner_rls('audited.narrowed', 'owner')");
        run("CREATE POLICY only_notes ON audited.narrowed AS RESTRICTIVE FOR UPDATE USING (kind = 'note') WITH CHECK (kind = 'note')");
        run("CREATE TABLE audited.mixed (id int, owner uuid, kind text)");
        run("CREATE INDEX ON audited.mixed (owner)");
        run("ALTER TABLE audited.mixed ENABLE ROW LEVEL SECURITY");
        run("CREATE POLICY own_kinds ON audited.mixed USING (owner = (select dana.uid()) AND kind <> 'locked') WITH CHECK (kind = 'note')");
        let found: Vec<String> = crate::tests::strings("SELECT table_name || ' ' || finding || ' ' || coalesce(policy, '-') FROM dana.rls_audit('audited')");
        assert_eq!(
            found,
            [
                "audited.locked no_policy -",
                "audited.open_table rls_disabled -",
                "audited.slow multiple_permissive_policies also_select, per_row",
                "audited.slow unindexed_policy_column also_select",
                "audited.slow unindexed_policy_column per_row",
                "audited.slow unwrapped_call per_row",
            ]
        );
        let detail = one::<String>(
            "SELECT detail FROM dana.rls_audit('audited') WHERE finding = 'unwrapped_call'",
        )
        .unwrap();
        assert!(
            detail.starts_with("dana.uid() is evaluated once per row"),
            "{detail}"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM dana.rls_audit('no_such_schema')"),
            Some(0)
        );
    }

    fn api_role() {
        run("CREATE ROLE dana_test_api NOLOGIN");
        run("GRANT ALL ON public.notes TO dana_test_api");
        run("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO dana_test_api");
        run("GRANT USAGE ON SCHEMA dana, tests TO dana_test_api");
    }

    #[pg_test]
    fn public_read_lets_everyone_read_and_only_owners_or_platform_admins_write() {
        notes_table();
        api_role();
        run("SELECT dana.enable_public_read_rls('public.notes', 'user_id')");
        set_claims(&claims_of(ALICE));
        run("SET LOCAL ROLE dana_test_api");
        assert_eq!(one::<i64>("SELECT count(*) FROM public.notes"), Some(2));
        assert_eq!(
            one::<i64>(
                "WITH u AS (UPDATE public.notes SET body = 'x' RETURNING 1) SELECT count(*) FROM u"
            ),
            Some(1)
        );
        assert_eq!(one::<i64>("WITH d AS (DELETE FROM public.notes WHERE body = 'bob''s' RETURNING 1) SELECT count(*) FROM d"), Some(0));
        run("RESET ROLE");
        // Without an owner column: writes are the platform's.
        run("SELECT dana.enable_public_read_rls('public.notes')");
        run("SET LOCAL ROLE dana_test_api");
        assert_eq!(
            one::<i64>(
                "WITH u AS (UPDATE public.notes SET body = 'y' RETURNING 1) SELECT count(*) FROM u"
            ),
            Some(0)
        );
        set_claims(r#"{"role":"authenticated","app_metadata":{"platform_admin":true}}"#);
        assert_eq!(
            one::<i64>(
                "WITH u AS (UPDATE public.notes SET body = 'y' RETURNING 1) SELECT count(*) FROM u"
            ),
            Some(2)
        );
        run("RESET ROLE");
    }

    #[pg_test]
    fn tenant_admins_write_their_tenant_and_never_the_catalogues() {
        notes_table();
        api_role();
        run("UPDATE public.notes SET tenant_id = '10000000-0000-4000-8000-000000000001'");
        run("INSERT INTO public.notes (user_id, tenant_id, body) VALUES (gen_random_uuid(), '20000000-0000-4000-8000-000000000002', 'other tenant')");
        run("SELECT dana.enable_tenant_rls('public.notes', 'tenant_id', 'user_id')");
        run("CREATE TABLE public.catalogue (id int, price int)");
        run("INSERT INTO public.catalogue VALUES (1, 100)");
        run("GRANT ALL ON public.catalogue TO dana_test_api");
        run("SELECT dana.enable_admin_write_rls('public.catalogue')");
        let tenant_admin = format!(
            r#"{{"sub":"{}","role":"authenticated","app_metadata":{{"tenant_id":"10000000-0000-4000-8000-000000000001","role":"admin"}}}}"#,
            "ad000000-0000-4000-8000-000000000003"
        );
        set_claims(&tenant_admin);
        run("SET LOCAL ROLE dana_test_api");
        // Every row of their tenant (Alice's and Bob's here), none of the other tenant's.
        assert_eq!(one::<i64>("WITH u AS (UPDATE public.notes SET body = 'edited' RETURNING 1) SELECT count(*) FROM u"), Some(2));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM public.notes WHERE body = 'other tenant'"),
            Some(0)
        );
        // The catalogue is not theirs to change.
        assert_eq!(one::<i64>("WITH u AS (UPDATE public.catalogue SET price = 1 RETURNING 1) SELECT count(*) FROM u"), Some(0));
        run("RESET ROLE");
    }

    #[pg_test]
    fn api_roles_may_execute_only_what_they_need() {
        run("CREATE ROLE dana_test_plain NOLOGIN");
        let callable = crate::tests::strings(
            "SELECT p.proname::text FROM pg_proc p
              WHERE p.pronamespace = 'dana'::regnamespace
                AND has_function_privilege('dana_test_plain', p.oid, 'EXECUTE')
              ORDER BY 1",
        );
        assert_eq!(
            callable,
            [
                "create_api_key",
                "email",
                "has_role",
                "integration_types",
                "is_admin",
                "is_platform_admin",
                "is_tenant_admin",
                "is_tenant_owner",
                "jwt",
                "revoke_api_key",
                "role",
                "tenant_id",
                "tenant_role",
                "uid",
                "upsert_integration_config"
            ]
        );
        // No function of the extension runs with its owner's rights.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_proc WHERE pronamespace = 'dana'::regnamespace AND prosecdef"),
            Some(0)
        );
    }
}
