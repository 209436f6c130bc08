#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    const SLACK: &str = r#"{"bot_token":"xoxb-1111-2222-abcdefghijkl","channel_id":"C0123456789","signing_secret":"0123456789abcdef0123456789abcdef"}"#;

    /// A table shaped like public.integration_configs (the migrations create the real one).
    fn configs_table() {
        run("CREATE TABLE public.integration_configs (
               id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
               user_id uuid NOT NULL DEFAULT dana.uid(),
               integration_type text NOT NULL,
               config jsonb NOT NULL DEFAULT '{}',
               secrets bytea, secrets_key_version integer,
               status text NOT NULL DEFAULT 'pending',
               last_verified_at timestamptz, last_error text,
               updated_at timestamptz NOT NULL DEFAULT now(),
               UNIQUE (user_id, integration_type))");
        run("CREATE TRIGGER integration_configs_guard BEFORE INSERT OR UPDATE ON public.integration_configs
               FOR EACH ROW EXECUTE FUNCTION dana.integration_configs_guard()");
        run("CREATE ROLE dana_test_user NOLOGIN");
        run("GRANT ALL ON public.integration_configs TO dana_test_user");
        run("GRANT USAGE ON SCHEMA dana, tests TO dana_test_user");
    }

    fn insert_slack(user: &str) -> String {
        one::<String>(&format!(
            "INSERT INTO public.integration_configs (user_id, integration_type, config)
             VALUES ('{user}', 'slack', '{SLACK}') RETURNING id::text"
        ))
        .unwrap()
    }

    fn as_user(user: &str) {
        set_claims(&claims_of(user));
        run("SET LOCAL ROLE dana_test_user");
    }

    #[pg_test]
    fn secrets_are_encrypted_and_masked() {
        configs_table();
        let id = insert_slack(ALICE);
        assert_eq!(
            one::<pgrx::JsonB>("SELECT config FROM public.integration_configs")
                .unwrap()
                .0,
            serde_json::json!({"bot_token": "xoxb-…ijkl", "channel_id": "C0123456789", "signing_secret": "…cdef"})
        );
        assert_eq!(one::<bool>("SELECT position('abcdefghijkl'::bytea in secrets) = 0 FROM public.integration_configs"), Some(true));
        assert_eq!(
            one::<i32>("SELECT secrets_key_version FROM public.integration_configs"),
            Some(2)
        );
        let secrets = one::<pgrx::JsonB>(&format!("SELECT dana.integration_secrets('{id}')"))
            .unwrap()
            .0;
        assert_eq!(secrets["bot_token"], "xoxb-1111-2222-abcdefghijkl");
        assert_eq!(
            secrets["signing_secret"],
            "0123456789abcdef0123456789abcdef"
        );
    }

    #[pg_test]
    fn invalid_configs_are_refused_with_every_problem() {
        configs_table();
        let err = error_of(
            r#"INSERT INTO public.integration_configs (user_id, integration_type, config)
               VALUES ('a11ce000-0000-4000-8000-000000000001', 'slack', '{"bot_token":"xoxp-1","api_key":"leak"}')"#,
        )
        .unwrap();
        assert!(err.starts_with("23514: invalid slack integration config: api_key is not a field of this integration type; bot_token must start with xoxb- or xoxe.xoxb- | ["), "{err}");
        let err = error_of(
            r#"INSERT INTO public.integration_configs (user_id, integration_type, config)
               VALUES ('a11ce000-0000-4000-8000-000000000001', 'email',
                       '{"smtp_host":"smtp.x.io","smtp_port":70000,"username":"u","password":"p","from_address":"nope"}')"#,
        )
        .unwrap();
        assert!(err.contains("smtp_port must be a port number from 1 to 65535; from_address must be an e-mail address"), "{err}");
        let err = error_of("INSERT INTO public.integration_configs (user_id, integration_type) VALUES ('a11ce000-0000-4000-8000-000000000001', 'myspace')").unwrap();
        assert!(
            err.starts_with(
                "23514: unknown integration type \"myspace\" | supported types: slack, email"
            ),
            "{err}"
        );
        let err = error_of("INSERT INTO public.integration_configs (user_id, integration_type, config) VALUES ('a11ce000-0000-4000-8000-000000000001', 'slack', '[1]')").unwrap();
        assert!(err.contains("must be a JSON object"), "{err}");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM public.integration_configs"),
            Some(0)
        );
    }

    #[pg_test]
    fn masks_round_trip_and_secrets_can_be_replaced_or_removed() {
        configs_table();
        let id = insert_slack(ALICE);
        let secrets = || {
            one::<pgrx::JsonB>(&format!("SELECT dana.integration_secrets('{id}')"))
                .unwrap()
                .0
        };
        // The UI sends back what it read, with a new channel: the stored secrets stay.
        run(
            r#"UPDATE public.integration_configs SET config = config || '{"channel_id":"C9999999999"}'"#,
        );
        assert_eq!(secrets()["bot_token"], "xoxb-1111-2222-abcdefghijkl");
        // Left out: kept. Null: removed (signing_secret is optional). New value: replaced.
        run(
            r#"UPDATE public.integration_configs SET config = '{"channel_id":"C9999999999","signing_secret":null,"bot_token":"xoxb-9999-new-token-value"}'"#,
        );
        assert_eq!(
            secrets(),
            serde_json::json!({"bot_token": "xoxb-9999-new-token-value"})
        );
        // A mask that does not match the stored secret is never stored as the secret.
        let err = error_of(r#"UPDATE public.integration_configs SET config = '{"channel_id":"C9999999999","bot_token":"xoxb-…zzzz"}'"#).unwrap();
        assert!(err.contains("bot_token looks like a masked value"), "{err}");
        // A required secret cannot be removed.
        let err = error_of(r#"UPDATE public.integration_configs SET config = '{"channel_id":"C9999999999","bot_token":null}'"#).unwrap();
        assert!(err.contains("bot_token is required"), "{err}");
    }

    #[pg_test]
    fn ciphertexts_cannot_be_written_or_moved_between_rows() {
        configs_table();
        let a = insert_slack(ALICE);
        let b = insert_slack(BOB);
        let err = error_of("UPDATE public.integration_configs SET secrets = '\\x00'").unwrap();
        assert!(
            err.starts_with("42501: secrets and secrets_key_version are managed by dana"),
            "{err}"
        );
        let err = error_of(&format!(
            "UPDATE public.integration_configs SET user_id = '{BOB}' WHERE id = '{a}'"
        ))
        .unwrap();
        assert!(err.contains("cannot change"), "{err}");
        // Even copied behind the trigger's back, a ciphertext only opens in its own row.
        run("ALTER TABLE public.integration_configs DISABLE TRIGGER integration_configs_guard");
        run(&format!("UPDATE public.integration_configs SET secrets = (SELECT secrets FROM public.integration_configs WHERE id = '{a}') WHERE id = '{b}'"));
        run("ALTER TABLE public.integration_configs ENABLE TRIGGER integration_configs_guard");
        let err = error_of(&format!("SELECT dana.integration_secrets('{b}')")).unwrap();
        assert!(err.contains("could not be decrypted"), "{err}");
    }

    #[pg_test]
    fn secrets_are_only_for_the_service_role() {
        configs_table();
        let id = insert_slack(ALICE);
        run("GRANT EXECUTE ON FUNCTION dana.integration_secrets(uuid) TO dana_test_user");
        as_user(ALICE);
        let err = error_of(&format!("SELECT dana.integration_secrets('{id}')")).unwrap();
        assert_eq!(
            err,
            "42501: dana.integration_secrets() is only for the service role"
        );
        run("RESET ROLE");
        let err = error_of("SELECT dana.integration_secrets(gen_random_uuid())").unwrap();
        assert!(
            err.starts_with("P0002: no integration config with id"),
            "{err}"
        );
    }

    #[pg_test]
    fn without_a_key_nothing_is_stored() {
        configs_table();
        run("SET LOCAL dana.secret_keys = ''");
        let err = error_of(&format!("INSERT INTO public.integration_configs (user_id, integration_type, config) VALUES ('{ALICE}', 'slack', '{SLACK}')")).unwrap();
        assert!(err.contains("dana.secret_keys is not set"), "{err}");
        run("SET LOCAL dana.secret_keys = '1:AAAA'");
        let err = error_of(&format!("INSERT INTO public.integration_configs (user_id, integration_type, config) VALUES ('{ALICE}', 'slack', '{SLACK}')")).unwrap();
        assert!(
            err.contains("dana.secret_keys is malformed: entry 1: key must be 32 bytes"),
            "{err}"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM public.integration_configs"),
            Some(0)
        );
    }

    #[pg_test]
    fn the_key_setting_is_hidden_from_other_roles() {
        configs_table();
        as_user(ALICE);
        let err = error_of("SHOW dana.secret_keys").unwrap();
        assert!(err.starts_with("42501"), "{err}");
        let err = error_of("SET dana.secret_keys = '9:AAAA'").unwrap();
        assert!(err.starts_with("42501"), "{err}");
        run("RESET ROLE");
    }

    #[pg_test]
    fn rotation_reseals_with_the_newest_key() {
        configs_table();
        run("SET LOCAL dana.secret_keys = '1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE='");
        let id = insert_slack(ALICE);
        run("SET LOCAL dana.secret_keys = '1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,3:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM='");
        assert_eq!(
            one::<String>(
                "SELECT resealed || '/' || undecryptable FROM dana.rotate_integration_secrets()"
            )
            .as_deref(),
            Some("1/0")
        );
        assert_eq!(
            one::<i32>("SELECT secrets_key_version FROM public.integration_configs"),
            Some(3)
        );
        assert_eq!(
            one::<String>(
                "SELECT resealed || '/' || undecryptable FROM dana.rotate_integration_secrets()"
            )
            .as_deref(),
            Some("0/0")
        );
        run("SET LOCAL dana.secret_keys = '3:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM='");
        let secrets = one::<pgrx::JsonB>(&format!("SELECT dana.integration_secrets('{id}')"))
            .unwrap()
            .0;
        assert_eq!(secrets["bot_token"], "xoxb-1111-2222-abcdefghijkl");
    }

    #[pg_test]
    fn users_cannot_verify_themselves_and_disabled_needs_reverification() {
        configs_table();
        let id = insert_slack(ALICE);
        as_user(ALICE);
        let err = error_of("UPDATE public.integration_configs SET status = 'active'").unwrap();
        assert!(
            err.contains("status \"active\" is set by verifying the integration"),
            "{err}"
        );
        let err =
            error_of("UPDATE public.integration_configs SET last_verified_at = now()").unwrap();
        assert!(err.starts_with("42501"), "{err}");
        run("RESET ROLE");
        // The service role (here: a superuser) records a verification.
        assert_eq!(
            one::<String>(&format!(
                "SELECT dana.record_integration_verification('{id}', true)"
            ))
            .as_deref(),
            Some("active")
        );
        assert_eq!(one::<bool>("SELECT last_verified_at = now() AND last_error IS NULL FROM public.integration_configs"), Some(true));
        // Editing a verified config sends it back to pending.
        as_user(ALICE);
        run(
            r#"UPDATE public.integration_configs SET config = config || '{"channel_id":"C5555555555"}'"#,
        );
        assert_eq!(
            one::<String>("SELECT status FROM public.integration_configs").as_deref(),
            Some("pending")
        );
        run("UPDATE public.integration_configs SET status = 'disabled'");
        run("RESET ROLE");
        let err = error_of(&format!(
            "SELECT dana.record_integration_verification('{id}', true)"
        ))
        .unwrap();
        assert!(
            err.contains("a disabled integration cannot become active directly"),
            "{err}"
        );
        run("UPDATE public.integration_configs SET status = 'pending'");
        assert_eq!(
            one::<String>(&format!(
                "SELECT dana.record_integration_verification('{id}', false, 'invalid_auth')"
            ))
            .as_deref(),
            Some("error")
        );
        assert_eq!(
            one::<String>("SELECT last_error FROM public.integration_configs").as_deref(),
            Some("invalid_auth")
        );
        let err = error_of("UPDATE public.integration_configs SET status = 'paused'").unwrap();
        assert!(
            err.contains("status must be one of pending, active, error, disabled"),
            "{err}"
        );
    }

    #[pg_test]
    fn upsert_creates_then_updates_the_signed_in_users_config() {
        configs_table();
        as_user(BOB);
        let first = one::<String>(&format!(
            "SELECT dana.upsert_integration_config('slack', '{SLACK}')::text"
        ))
        .unwrap();
        let second = one::<String>(r#"SELECT dana.upsert_integration_config('slack', '{"channel_id":"C7777777777"}')::text"#).unwrap();
        assert_eq!(first, second);
        assert_eq!(one::<String>("SELECT user_id::text || ' ' || (config->>'channel_id') FROM public.integration_configs").as_deref(), Some(&*format!("{BOB} C7777777777")));
        run("RESET ROLE");
        set_claims("");
        let err = error_of("SELECT dana.upsert_integration_config('slack', '{}')").unwrap();
        assert!(err.contains("needs a signed-in user"), "{err}");
    }

    #[pg_test]
    fn legacy_table_rows_move_and_refused_rows_are_kept() {
        configs_table();
        run("CREATE TABLE public.integrations_config (id uuid, user_id uuid, type text, settings jsonb)");
        run(&format!(
            "INSERT INTO public.integrations_config VALUES
            (gen_random_uuid(), '{ALICE}', 'slack', '{SLACK}'),
            (gen_random_uuid(), '{BOB}', 'slack', '{{\"bot_token\":\"bad\"}}')"
        ));
        assert_eq!(
            one::<String>(
                "SELECT moved || '/' || rejected FROM dana.migrate_legacy_integrations_config()"
            )
            .as_deref(),
            Some("1/1")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM public.integration_configs WHERE secrets IS NOT NULL"),
            Some(1)
        );
        // The old table, secrets in clear, is gone; the refused row is kept, sealed.
        assert_eq!(one::<bool>("SELECT to_regclass('public.integrations_config') IS NULL AND to_regclass('dana_meta.integrations_config') IS NULL"), Some(true));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM dana_meta.integrations_config_rejects WHERE reason LIKE 'invalid slack integration config%' AND user_id = '{BOB}' AND integration_type = 'slack'")), Some(1));
        assert_eq!(
            one::<bool>("SELECT position('\"bad\"'::bytea in sealed_row) = 0 FROM dana_meta.integrations_config_rejects"),
            Some(true),
            "the refused row's config is not stored in clear"
        );
        let archived = one::<pgrx::JsonB>("SELECT dana.archived_legacy_integration(id) FROM dana_meta.integrations_config_rejects").unwrap().0;
        assert_eq!(
            archived["settings"]["bot_token"], "bad",
            "the operator reads it back whole"
        );
        assert_eq!(archived["user_id"], BOB);
        assert_eq!(
            one::<String>(
                "SELECT moved || '/' || rejected FROM dana.migrate_legacy_integrations_config()"
            )
            .as_deref(),
            Some("0/0")
        );
    }

    #[pg_test]
    fn integration_types_lists_fields() {
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT integration_type) FROM dana.integration_types()"),
            Some(10)
        );
        assert_eq!(one::<bool>("SELECT secret FROM dana.integration_types() WHERE integration_type = 'email' AND field = 'password'"), Some(true));
    }

    #[pg_test]
    fn short_secrets_and_passwords_show_nothing() {
        configs_table();
        run(&format!(
            r#"INSERT INTO public.integration_configs (user_id, integration_type, config) VALUES ('{ALICE}', 'email',
               '{{"smtp_host":"smtp.example.com","smtp_port":587,"username":"u","password":"abcde_fghijk","from_address":"a@example.com"}}')"#
        ));
        assert_eq!(
            one::<String>("SELECT config->>'password' FROM public.integration_configs").as_deref(),
            Some("…")
        );
        // Sent back as shown, the stored password stays.
        run(r#"UPDATE public.integration_configs SET config = config || '{"from_name":"Alice"}'"#);
        let id = one::<String>("SELECT id::text FROM public.integration_configs").unwrap();
        assert_eq!(
            one::<pgrx::JsonB>(&format!("SELECT dana.integration_secrets('{id}')"))
                .unwrap()
                .0["password"],
            "abcde_fghijk"
        );
    }

    #[pg_test]
    fn an_undecryptable_row_can_still_be_disabled_rotated_past_and_re_entered() {
        configs_table();
        run("SET LOCAL dana.secret_keys = '1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE='");
        let broken = insert_slack(ALICE);
        let fine = insert_slack(BOB);
        // Bob's row is resealed with key 3; then key 1 is removed too early, before Alice's was.
        run("SET LOCAL dana.secret_keys = '1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,3:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM='");
        run(&format!(
            "UPDATE public.integration_configs SET updated_at = updated_at WHERE id = '{fine}'"
        ));
        run("SET LOCAL dana.secret_keys = '3:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM='");
        assert_eq!(
            one::<String>(
                "SELECT resealed || '/' || undecryptable FROM dana.rotate_integration_secrets()"
            )
            .as_deref(),
            Some("0/1"),
            "rotation goes on past a row it cannot open"
        );
        assert_eq!(
            one::<String>(&format!("SELECT status || ': ' || last_error FROM public.integration_configs WHERE id = '{broken}'")).as_deref(),
            Some("error: the stored secrets cannot be decrypted with the configured keys: enter them again")
        );
        // Its owner can still disable it…
        as_user(ALICE);
        run(&format!(
            "UPDATE public.integration_configs SET status = 'disabled' WHERE id = '{broken}'"
        ));
        // …and, re-entering the secret, replace what no key opens.
        let err = error_of(&format!(
            r#"UPDATE public.integration_configs SET config = '{{"channel_id":"C0123456789","bot_token":"xoxb-…ijkl"}}', status = 'pending' WHERE id = '{broken}'"#
        ))
        .unwrap();
        assert!(err.contains("bot_token looks like a masked value"), "{err}");
        run(&format!(
            r#"UPDATE public.integration_configs SET config = '{{"channel_id":"C0123456789","bot_token":"xoxb-2222-new-token-abcdefgh"}}', status = 'pending' WHERE id = '{broken}'"#
        ));
        run("RESET ROLE");
        assert_eq!(
            one::<pgrx::JsonB>(&format!("SELECT dana.integration_secrets('{broken}')"))
                .unwrap()
                .0,
            serde_json::json!({"bot_token": "xoxb-2222-new-token-abcdefgh"})
        );
    }

    #[pg_test]
    fn configs_cannot_point_at_internal_hosts_unless_the_operator_allows_them() {
        configs_table();
        let insert = |host: &str| {
            error_of(&format!(
                r#"INSERT INTO public.integration_configs (user_id, integration_type, config) VALUES ('{ALICE}', 'postgresql',
                   '{{"host":"{host}","database":"d","username":"u","password":"p"}}')"#
            ))
        };
        for host in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "localhost",
            "2130706433",
        ] {
            let err = insert(host).unwrap_or_else(|| panic!("{host} was accepted"));
            assert!(
                err.starts_with("23514: invalid postgresql integration config: host "),
                "{err}"
            );
        }
        run("SET LOCAL dana.integration_allowed_hosts = '10.0.0.0/8'");
        assert_eq!(insert("10.1.2.3"), None);
        // The setting is the superuser's.
        as_user(ALICE);
        let err = error_of("SET dana.integration_allowed_hosts = '0.0.0.0/0'").unwrap();
        assert!(err.starts_with("42501"), "{err}");
        run("RESET ROLE");
    }
}
