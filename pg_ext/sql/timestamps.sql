-- Attaching dana.touch_updated_at(): dana.track_timestamps() and the check that makes a
-- misconfigured trigger fail when it is created, not at the first UPDATE.

-- The column a touch trigger maintains: its first argument, else updated_at.
CREATE FUNCTION dana._touch_column(trigger_oid oid)
RETURNS name
LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(split_part(encode(t.tgargs, 'escape'), '\000', 1), ''), 'updated_at')::name
    FROM pg_trigger t WHERE t.oid = trigger_oid
$$;

-- Raises a clear error unless the trigger is BEFORE UPDATE FOR EACH ROW on a table whose
-- column exists and is timestamptz or timestamp.
CREATE FUNCTION dana._check_touch_trigger(trigger_oid oid)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
  trg record;
  col name;
  col_type regtype;
BEGIN
  SELECT t.tgname, t.tgrelid::regclass AS tbl, t.tgtype, t.tgnargs INTO trg
    FROM pg_trigger t WHERE t.oid = trigger_oid;
  -- tgtype bits: 1 = ROW, 2 = BEFORE, 16 = UPDATE (see pg_trigger.h)
  IF trg.tgtype & 1 = 0 OR trg.tgtype & 2 = 0 OR trg.tgtype & 16 = 0 OR trg.tgtype & (4 | 8 | 32) <> 0 THEN
    RAISE EXCEPTION 'dana: trigger % on % must be BEFORE UPDATE ... FOR EACH ROW to use dana.touch_updated_at()', trg.tgname, trg.tbl
      USING ERRCODE = '39P01';
  END IF;
  IF trg.tgnargs > 1 THEN
    RAISE EXCEPTION 'dana: trigger % on % passes % arguments; dana.touch_updated_at() takes at most one, the column name', trg.tgname, trg.tbl, trg.tgnargs
      USING ERRCODE = '39P01';
  END IF;
  col := dana._touch_column(trigger_oid);
  SELECT a.atttypid::regtype INTO col_type FROM pg_attribute a
   WHERE a.attrelid = trg.tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'dana: table % has no column "%" for trigger % to maintain', trg.tbl, col, trg.tgname
      USING ERRCODE = '42703', HINT = 'Add the column, or pass its name: EXECUTE FUNCTION dana.touch_updated_at(''column'').';
  END IF;
  IF col_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
    RAISE EXCEPTION 'dana: column "%" of table % has type %; dana.touch_updated_at() needs timestamptz or timestamp', col, trg.tbl, col_type
      USING ERRCODE = '42804';
  END IF;
END $$;

CREATE FUNCTION dana._check_touch_triggers_on_create()
RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  created oid;
BEGIN
  FOR created IN
    SELECT c.objid FROM pg_event_trigger_ddl_commands() c
      JOIN pg_trigger t ON t.oid = c.objid
     WHERE c.classid = 'pg_trigger'::regclass AND t.tgfoid = 'dana.touch_updated_at'::regproc
  LOOP
    PERFORM dana._check_touch_trigger(created);
  END LOOP;
END $$;

CREATE EVENT TRIGGER dana_check_touch_triggers ON ddl_command_end
  WHEN TAG IN ('CREATE TRIGGER')
  EXECUTE FUNCTION dana._check_touch_triggers_on_create();

CREATE FUNCTION dana.track_timestamps(tbl regclass)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  col name;
  col_type regtype;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = tbl AND relkind IN ('r', 'p')) THEN
    RAISE EXCEPTION 'dana: % is not a table', tbl USING ERRCODE = '42809';
  END IF;
  FOREACH col IN ARRAY ARRAY['created_at', 'updated_at']::name[] LOOP
    SELECT a.atttypid::regtype INTO col_type FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
      EXECUTE format('ALTER TABLE %s ADD COLUMN %I timestamptz NOT NULL DEFAULT now()', tbl, col);
      RETURN QUERY SELECT 'add column', format('%s.%I', tbl, col);
    ELSIF col_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
      RAISE EXCEPTION 'dana: column "%" of table % has type %; dana.track_timestamps() needs timestamptz or timestamp', col, tbl, col_type
        USING ERRCODE = '42804';
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger t
                  WHERE t.tgrelid = tbl AND t.tgfoid = 'dana.touch_updated_at'::regproc
                    AND dana._touch_column(t.oid) = 'updated_at') THEN
    EXECUTE format('CREATE TRIGGER dana_touch_updated_at BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION dana.touch_updated_at()', tbl);
    RETURN QUERY SELECT 'create trigger', format('dana_touch_updated_at on %s', tbl);
  END IF;
END $$;

COMMENT ON FUNCTION dana.track_timestamps(regclass) IS
  'Adds created_at and updated_at (timestamptz not null default now()) where missing and attaches dana.touch_updated_at() once. Idempotent; returns what it changed.';
COMMENT ON FUNCTION dana.touch_updated_at() IS
  'BEFORE UPDATE FOR EACH ROW trigger: sets the column named by its argument (default updated_at) to now(), unless nothing else in the row changed. Checked when the trigger is created.';
