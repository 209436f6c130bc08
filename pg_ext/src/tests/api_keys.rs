#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    /// A table shaped like public.api_keys (the migrations create the real one), under owner RLS.
    fn keys_table() {
        run("CREATE TABLE public.api_keys (
               id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
               user_id uuid NOT NULL DEFAULT dana.uid(),
               name text NOT NULL, key_prefix text NOT NULL, key_hash text NOT NULL UNIQUE,
               scopes text[] NOT NULL DEFAULT '{}', last_used_at timestamptz,
               expires_at timestamptz, revoked_at timestamptz)");
        run(
            "CREATE TRIGGER api_keys_guard BEFORE INSERT OR UPDATE OR DELETE ON public.api_keys
               FOR EACH ROW EXECUTE FUNCTION dana.api_keys_guard()",
        );
        run("SELECT dana.enable_owner_rls('public.api_keys')");
        run("CREATE ROLE dana_test_user NOLOGIN");
        run("GRANT ALL ON public.api_keys TO dana_test_user");
        run("GRANT USAGE ON SCHEMA dana, tests TO dana_test_user");
    }

    fn as_user(user: &str) {
        set_claims(&claims_of(user));
        run("SET LOCAL ROLE dana_test_user");
    }

    #[pg_test]
    fn a_key_is_shown_once_and_only_its_hash_is_kept() {
        keys_table();
        as_user(ALICE);
        let key =
            one::<String>("SELECT key FROM dana.create_api_key('CI', '{read,write}', 30)").unwrap();
        assert!(key.starts_with("dana_") && key.len() == 45, "{key}");
        assert_eq!(
            one::<bool>(&format!(
                "SELECT key_hash = encode(sha256('{key}'), 'hex') AND key_prefix = left('{key}', 12)
                        AND scopes = '{{read,write}}' AND expires_at = now() + interval '30 days'
                        AND user_id = '{ALICE}'
                   FROM public.api_keys"
            )),
            Some(true)
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM public.api_keys WHERE key_hash = '{key}' OR key_prefix = '{key}'"
            )),
            Some(0),
            "the key itself is not stored"
        );
        run("RESET ROLE");
    }

    #[pg_test]
    fn rows_cannot_be_written_directly_by_their_owner() {
        keys_table();
        as_user(ALICE);
        let id = one::<String>("SELECT id::text FROM dana.create_api_key('CI')").unwrap();
        for sql in [
            "UPDATE public.api_keys SET scopes = '{admin}'".to_owned(),
            "UPDATE public.api_keys SET expires_at = NULL".to_owned(),
            "DELETE FROM public.api_keys".to_owned(),
            format!(
                "INSERT INTO public.api_keys (name, key_prefix, key_hash, scopes) VALUES ('x', 'dana_abc', '{}', '{{admin}}')",
                "0".repeat(64)
            ),
        ] {
            let err = error_of(&sql).unwrap_or_else(|| panic!("{sql} was allowed"));
            assert!(err.starts_with("42501: API keys cannot be written directly"), "{err}");
        }
        // Revoked for good: revoking again answers the first time, un-revoking is refused.
        let first = one::<String>(&format!("SELECT dana.revoke_api_key('{id}')::text")).unwrap();
        let again = one::<String>(&format!("SELECT dana.revoke_api_key('{id}')::text")).unwrap();
        assert_eq!(first, again);
        let err = error_of("UPDATE public.api_keys SET revoked_at = NULL").unwrap();
        assert!(err.starts_with("42501"), "{err}");
        run("RESET ROLE");
    }

    #[pg_test]
    fn bad_requests_and_other_users_keys_are_refused() {
        keys_table();
        as_user(ALICE);
        let id = one::<String>("SELECT id::text FROM dana.create_api_key('CI')").unwrap();
        let err = error_of("SELECT dana.create_api_key('', '{admin}', 400)").unwrap();
        assert_eq!(
            err,
            "22023: invalid API key request: name must have 1 to 100 characters; scope \"admin\" is not one of read, write; expires_in_days must be 1 to 365"
        );
        as_user(BOB);
        let err = error_of(&format!("SELECT dana.revoke_api_key('{id}')")).unwrap();
        assert!(err.starts_with("P0002: no API key with id"), "{err}");
        set_claims("");
        let err = error_of("SELECT dana.create_api_key('x')").unwrap();
        assert!(err.contains("needs a signed-in user"), "{err}");
        run("RESET ROLE");
        assert_eq!(
            one::<String>("SELECT revoked_at::text FROM public.api_keys"),
            None,
            "Bob did not revoke Alice's key"
        );
    }
}
