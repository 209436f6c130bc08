#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    fn items_table() {
        run("CREATE TABLE public.items (id int PRIMARY KEY, name text, qty int)");
        run("SELECT dana.track_timestamps('public.items')");
        run("INSERT INTO public.items (id, name, qty) VALUES (1, 'a', 1)");
        // Pretend the row was written long ago, bypassing the trigger.
        run("ALTER TABLE public.items DISABLE TRIGGER dana_touch_updated_at");
        run("UPDATE public.items SET updated_at = '2000-01-01'");
        run("ALTER TABLE public.items ENABLE TRIGGER dana_touch_updated_at");
    }

    fn updated_at() -> String {
        one::<String>("SELECT updated_at::text FROM public.items WHERE id = 1").unwrap()
    }

    #[pg_test]
    fn track_timestamps_adds_columns_and_trigger_once() {
        run("CREATE TABLE public.items (id int PRIMARY KEY)");
        let did = one::<String>("SELECT string_agg(action, ',' ORDER BY action) FROM dana.track_timestamps('public.items')");
        assert_eq!(did.as_deref(), Some("add column,add column,create trigger"));
        assert_eq!(
            one::<String>("SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' ORDER BY column_name)
                             FROM information_schema.columns WHERE table_name = 'items' AND column_name LIKE '%_at'").as_deref(),
            Some("created_at timestamp with time zone NO, updated_at timestamp with time zone NO")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM dana.track_timestamps('public.items')"),
            Some(0)
        );
    }

    #[pg_test]
    fn a_change_moves_updated_at_to_now() {
        items_table();
        run("UPDATE public.items SET qty = 2");
        assert_eq!(
            one::<bool>("SELECT updated_at = now() FROM public.items"),
            Some(true)
        );
    }

    #[pg_test]
    fn a_no_op_update_leaves_updated_at_alone() {
        items_table();
        run("UPDATE public.items SET qty = qty, name = name");
        assert_eq!(updated_at(), "2000-01-01 00:00:00+00");
    }

    #[pg_test]
    fn setting_only_updated_at_is_respected() {
        items_table();
        run("UPDATE public.items SET updated_at = '2010-05-05'");
        assert_eq!(updated_at(), "2010-05-05 00:00:00+00");
        // ...but together with a real change the trigger wins.
        run("UPDATE public.items SET updated_at = '2010-05-05', qty = 9");
        assert_eq!(
            one::<bool>("SELECT updated_at = now() FROM public.items"),
            Some(true)
        );
    }

    #[pg_test]
    fn null_and_text_changes_count() {
        items_table();
        run("UPDATE public.items SET name = NULL");
        assert_eq!(
            one::<bool>("SELECT updated_at = now() FROM public.items"),
            Some(true)
        );
    }

    #[pg_test]
    fn the_column_can_be_named_and_be_a_plain_timestamp() {
        run("CREATE TABLE public.events (id int, modified timestamp)");
        run("CREATE TRIGGER touch BEFORE UPDATE ON public.events FOR EACH ROW EXECUTE FUNCTION dana.touch_updated_at('modified')");
        run("INSERT INTO public.events VALUES (1, '2000-01-01')");
        run("UPDATE public.events SET id = 2");
        assert_eq!(
            one::<bool>("SELECT modified = localtimestamp FROM public.events"),
            Some(true)
        );
    }

    #[pg_test]
    fn misattached_triggers_fail_when_created() {
        run("CREATE TABLE public.bad (id int, updated_at text, touched date)");
        let err = error_of("CREATE TRIGGER t BEFORE UPDATE ON public.bad FOR EACH ROW EXECUTE FUNCTION dana.touch_updated_at()").unwrap();
        assert_eq!(err, "42804: dana: column \"updated_at\" of table bad has type text; dana.touch_updated_at() needs timestamptz or timestamp");
        let err = error_of("CREATE TRIGGER t BEFORE UPDATE ON public.bad FOR EACH ROW EXECUTE FUNCTION dana.touch_updated_at('missing')").unwrap();
        assert!(
            err.starts_with("42703: dana: table bad has no column \"missing\""),
            "{err}"
        );
        let err = error_of("CREATE TRIGGER t AFTER UPDATE ON public.bad FOR EACH ROW EXECUTE FUNCTION dana.touch_updated_at('touched')").unwrap();
        assert!(
            err.contains("must be BEFORE UPDATE ... FOR EACH ROW"),
            "{err}"
        );
        let err = error_of("CREATE TRIGGER t BEFORE INSERT OR UPDATE ON public.bad FOR EACH ROW EXECUTE FUNCTION dana.touch_updated_at('touched')").unwrap();
        assert!(
            err.contains("must be BEFORE UPDATE ... FOR EACH ROW"),
            "{err}"
        );
        let err = error_of("SELECT dana.track_timestamps('public.bad')").unwrap();
        assert!(
            err.starts_with("42804: dana: column \"updated_at\" of table bad has type text"),
            "{err}"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.bad'::regclass"),
            Some(0)
        );
    }

    #[pg_test]
    fn a_column_changed_after_attaching_fails_clearly_at_update() {
        items_table();
        run("ALTER TABLE public.items DROP COLUMN updated_at");
        let err = error_of("UPDATE public.items SET qty = 3").unwrap();
        assert!(err.contains("has no column \"updated_at\""), "{err}");
    }
}
