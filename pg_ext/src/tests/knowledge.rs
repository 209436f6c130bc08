#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    /// A table shaped like public.knowledge_files (the migrations create the real one).
    fn files_table() {
        run("CREATE TABLE public.knowledge_files (
               id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
               user_id uuid NOT NULL DEFAULT dana.uid(),
               file_name text NOT NULL, content_type text NOT NULL DEFAULT 'application/octet-stream',
               size_bytes bigint, sha256 text, storage_bucket text NOT NULL DEFAULT 'knowledge-files',
               storage_path text, status text NOT NULL DEFAULT 'pending', content_base64 text,
               agent_id uuid, metadata jsonb NOT NULL DEFAULT '{}')");
        run(
            "CREATE TRIGGER knowledge_files_guard BEFORE INSERT OR UPDATE ON public.knowledge_files
               FOR EACH ROW EXECUTE FUNCTION dana.knowledge_files_guard()",
        );
        run("SELECT dana.enable_owner_rls('public.knowledge_files')");
        run("CREATE ROLE dana_test_user NOLOGIN");
        run("GRANT ALL ON public.knowledge_files TO dana_test_user");
        run("GRANT USAGE ON SCHEMA dana, tests TO dana_test_user");
    }

    fn as_user(user: &str) {
        set_claims(&claims_of(user));
        run("SET LOCAL ROLE dana_test_user");
    }

    #[pg_test]
    fn users_create_only_bare_pending_rows() {
        files_table();
        as_user(ALICE);
        run("INSERT INTO public.knowledge_files (file_name, content_type) VALUES ('a.pdf', 'application/pdf')");
        for (columns, values) in [
            ("storage_path", format!("'{BOB}/secret.pdf'")),
            ("status", "'stored'".to_owned()),
            ("sha256", format!("'{}'", "0".repeat(64))),
            ("size_bytes", "1".to_owned()),
            ("storage_bucket", "'other-bucket'".to_owned()),
            ("content_base64", "'aGk='".to_owned()),
        ] {
            let err = error_of(&format!(
                "INSERT INTO public.knowledge_files (file_name, {columns}) VALUES ('x', {values})"
            ))
            .unwrap_or_else(|| panic!("{columns} was accepted"));
            assert!(
                err.starts_with(&format!(
                    "42501: only Dana's storage sets {columns} of a knowledge file"
                )),
                "{err}"
            );
        }
        run("RESET ROLE");
    }

    #[pg_test]
    fn users_change_only_name_agent_and_metadata() {
        files_table();
        run(&format!(
            "INSERT INTO public.knowledge_files (user_id, file_name, storage_path, status, sha256, size_bytes)
             VALUES ('{ALICE}', 'a.pdf', '{ALICE}/a.pdf', 'stored', '{}', 3)",
            "a".repeat(64)
        ));
        as_user(ALICE);
        run(
            r#"UPDATE public.knowledge_files SET file_name = 'renamed.pdf', metadata = '{"tag":1}'"#,
        );
        let err = error_of(&format!(
            "UPDATE public.knowledge_files SET storage_path = '{BOB}/his.pdf', status = 'pending'"
        ))
        .unwrap();
        assert!(
            err.starts_with(
                "42501: only Dana's storage sets storage_path, status of a knowledge file"
            ),
            "{err}"
        );
        let err = error_of("UPDATE public.knowledge_files SET content_type = 'text/html'").unwrap();
        assert!(err.contains("content_type"), "{err}");
        run("RESET ROLE");
        assert_eq!(
            one::<String>("SELECT file_name || ' ' || storage_path FROM public.knowledge_files")
                .as_deref(),
            Some(&*format!("renamed.pdf {ALICE}/a.pdf"))
        );
        // The service role (here a superuser) sets them.
        run("UPDATE public.knowledge_files SET status = 'failed'");
    }
}
