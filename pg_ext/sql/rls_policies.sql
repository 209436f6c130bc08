-- Policy helpers: one call applies a complete, idempotent policy set to a table and returns
-- what it changed (nothing, on a second call). Policies the helpers own are named `dana_*`;
-- applying a set drops the other `dana_*` policies of the table, so switching a table from one
-- set to another never leaves a permissive policy of the old set behind. Policies with other
-- names are the user's own and are never touched.
--
-- Written in PL/pgSQL because they are DDL generators: format('%I') quoting and catalog
-- queries read more plainly here than through SPI calls from Rust.

-- The column `col` of `tbl`, checked to exist and to have type `expected`.
-- `purpose` names the argument ("owner column"); `meaning` says in plain words what it is for.
CREATE FUNCTION dana._policy_column(tbl regclass, col name, expected regtype, purpose text, meaning text)
RETURNS smallint
LANGUAGE plpgsql STABLE AS $$
DECLARE
  found_num smallint;
  found_type regtype;
BEGIN
  IF col IS NULL THEN
    RAISE EXCEPTION 'dana: % of table % must not be NULL', purpose, tbl USING ERRCODE = '22004';
  END IF;
  SELECT a.attnum, a.atttypid::regtype INTO found_num, found_type
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'dana: table % has no column "%" (the %)', tbl, col, purpose
      USING ERRCODE = '42703',
            HINT = format('The %s is the %s column of %s %s. Pass the name of that column.', purpose, expected, tbl, meaning);
  END IF;
  IF found_type <> expected THEN
    RAISE EXCEPTION 'dana: column "%" of table % has type %, but the % must be %', col, tbl, found_type, purpose, expected
      USING ERRCODE = '42804';
  END IF;
  RETURN found_num;
END $$;

-- Enables RLS on `tbl` when it is not enabled yet.
CREATE FUNCTION dana._enable_rls(tbl regclass)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = tbl) THEN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    RETURN QUERY SELECT 'enable row level security', tbl::text;
  END IF;
END $$;

-- Creates an index on `col` unless an index already leads with it.
CREATE FUNCTION dana._ensure_index(tbl regclass, col name)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  attnum smallint;
  index_name text;
BEGIN
  SELECT a.attnum INTO attnum FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col;
  IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indkey[0] = attnum) THEN
    RETURN;
  END IF;
  index_name := left((SELECT relname FROM pg_class WHERE oid = tbl) || '_' || col || '_idx', 63);
  EXECUTE format('CREATE INDEX %I ON %s (%I)', index_name, tbl, col);
  RETURN QUERY SELECT 'create index', index_name;
END $$;

-- The definition of a policy as the catalog holds it, to tell whether ALTER POLICY changed it.
CREATE FUNCTION dana._policy_definition(tbl regclass, policy name)
RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT concat_ws(' | ', p.polcmd, p.polpermissive, p.polroles::text,
                   pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
    FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = policy
$$;

-- Creates policy `policy` or brings an existing one to the given definition.
-- `command` is SELECT/INSERT/UPDATE/DELETE; `roles` a comma-separated role list.
CREATE FUNCTION dana._ensure_policy(tbl regclass, policy name, command text, roles text,
                                    using_expr text, check_expr text)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  clauses text := '';
  before text;
  existing_cmd "char";
  existing_permissive boolean;
  wanted_cmd "char" := CASE command WHEN 'SELECT' THEN 'r' WHEN 'INSERT' THEN 'a'
                                    WHEN 'UPDATE' THEN 'w' WHEN 'DELETE' THEN 'd' END;
BEGIN
  IF using_expr IS NOT NULL THEN clauses := clauses || format(' USING (%s)', using_expr); END IF;
  IF check_expr IS NOT NULL THEN clauses := clauses || format(' WITH CHECK (%s)', check_expr); END IF;
  SELECT p.polcmd, p.polpermissive INTO existing_cmd, existing_permissive
    FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = policy;
  IF FOUND AND existing_cmd = wanted_cmd AND existing_permissive THEN
    before := dana._policy_definition(tbl, policy);
    EXECUTE format('ALTER POLICY %I ON %s TO %s', policy, tbl, roles) || clauses;
    IF dana._policy_definition(tbl, policy) IS DISTINCT FROM before THEN
      RETURN QUERY SELECT 'alter policy', format('%s on %s', policy, tbl);
    END IF;
    RETURN;
  ELSIF FOUND THEN
    -- A policy's command and kind cannot be altered: replace it.
    EXECUTE format('DROP POLICY %I ON %s', policy, tbl);
  END IF;
  EXECUTE format('CREATE POLICY %I ON %s AS PERMISSIVE FOR %s TO %s', policy, tbl, command, roles) || clauses;
  RETURN QUERY SELECT 'create policy', format('%s on %s', policy, tbl);
END $$;

-- Drops the table's `dana_*` policies that are not in `keep`.
CREATE FUNCTION dana._drop_other_policies(tbl regclass, keep name[])
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  stale name;
BEGIN
  FOR stale IN
    SELECT p.polname FROM pg_policy p
     WHERE p.polrelid = tbl AND p.polname LIKE 'dana\_%' AND p.polname <> ALL (keep)
     ORDER BY p.polname
  LOOP
    EXECUTE format('DROP POLICY %I ON %s', stale, tbl);
    RETURN QUERY SELECT 'drop policy', format('%s on %s', stale, tbl);
  END LOOP;
END $$;

-- Applies the four per-command policies of one set.
CREATE FUNCTION dana._apply_policy_set(tbl regclass, prefix text,
                                       select_roles text, select_using text,
                                       write_roles text, write_expr text)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  names name[] := ARRAY[prefix || '_select', prefix || '_insert', prefix || '_update', prefix || '_delete']::name[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = tbl AND relkind IN ('r', 'p')) THEN
    RAISE EXCEPTION 'dana: % is not a table', tbl USING ERRCODE = '42809';
  END IF;
  RETURN QUERY SELECT * FROM dana._enable_rls(tbl);
  RETURN QUERY SELECT * FROM dana._drop_other_policies(tbl, names);
  RETURN QUERY SELECT * FROM dana._ensure_policy(tbl, names[1], 'SELECT', select_roles, select_using, NULL);
  RETURN QUERY SELECT * FROM dana._ensure_policy(tbl, names[2], 'INSERT', write_roles, NULL, write_expr);
  RETURN QUERY SELECT * FROM dana._ensure_policy(tbl, names[3], 'UPDATE', write_roles, write_expr, write_expr);
  RETURN QUERY SELECT * FROM dana._ensure_policy(tbl, names[4], 'DELETE', write_roles, write_expr, NULL);
END $$;

-- The roles the Supabase API uses, where they exist (a plain database has neither).
CREATE FUNCTION dana._api_roles(wanted text[])
RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(string_agg(quote_ident(r), ', ' ORDER BY array_position(wanted, r)), 'public')
    FROM unnest(wanted) r WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
$$;

CREATE FUNCTION dana.enable_owner_rls(tbl regclass, owner_column name DEFAULT 'user_id')
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  owned text;
BEGIN
  PERFORM dana._policy_column(tbl, owner_column, 'uuid', 'owner column', 'that holds the id of the user who owns each row (compared with dana.uid())');
  owned := format('%I = (SELECT dana.uid())', owner_column);
  RETURN QUERY SELECT * FROM dana._apply_policy_set(tbl, 'dana_owner',
    dana._api_roles('{authenticated}'), owned, dana._api_roles('{authenticated}'), owned);
  RETURN QUERY SELECT * FROM dana._ensure_index(tbl, owner_column);
END $$;

-- Members read their tenant's rows. Writes stay inside the tenant too: a member writes the rows
-- they own (owner_column), and the tenant's admins write every row of their tenant; without an
-- owner column only the tenant's admins write.
CREATE FUNCTION dana.enable_tenant_rls(tbl regclass, tenant_column name DEFAULT 'tenant_id',
                                       owner_column name DEFAULT NULL)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  in_tenant text;
  writable text;
BEGIN
  PERFORM dana._policy_column(tbl, tenant_column, 'uuid', 'tenant column',
    'that holds the id of the tenant each row belongs to (compared with app_metadata.tenant_id)');
  in_tenant := format('%I = (SELECT dana.tenant_id())', tenant_column);
  writable := in_tenant || ' AND (SELECT dana.is_tenant_admin())';
  IF owner_column IS NOT NULL THEN
    PERFORM dana._policy_column(tbl, owner_column, 'uuid', 'owner column', 'that holds the id of the user who owns each row (compared with dana.uid())');
    writable := in_tenant || format(' AND (%I = (SELECT dana.uid()) OR (SELECT dana.is_tenant_admin()))', owner_column);
  END IF;
  RETURN QUERY SELECT * FROM dana._apply_policy_set(tbl, 'dana_tenant',
    dana._api_roles('{authenticated}'), in_tenant, dana._api_roles('{authenticated}'), writable);
  RETURN QUERY SELECT * FROM dana._ensure_index(tbl, tenant_column);
  IF owner_column IS NOT NULL THEN
    RETURN QUERY SELECT * FROM dana._ensure_index(tbl, owner_column);
  END IF;
END $$;

-- Anyone reads. Writes: the row's owner when an owner column is given, else platform admins.
CREATE FUNCTION dana.enable_public_read_rls(tbl regclass, owner_column name DEFAULT NULL)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
DECLARE
  writable text := '(SELECT dana.is_platform_admin())';
BEGIN
  IF owner_column IS NOT NULL THEN
    PERFORM dana._policy_column(tbl, owner_column, 'uuid', 'owner column', 'that holds the id of the user who owns each row (compared with dana.uid())');
    writable := format('%I = (SELECT dana.uid())', owner_column);
  END IF;
  RETURN QUERY SELECT * FROM dana._apply_policy_set(tbl, 'dana_public',
    dana._api_roles('{anon,authenticated}'), 'true', dana._api_roles('{authenticated}'), writable);
  IF owner_column IS NOT NULL THEN
    RETURN QUERY SELECT * FROM dana._ensure_index(tbl, owner_column);
  END IF;
END $$;

-- Platform catalogues: anyone reads, only platform admins write (never a tenant's admin).
CREATE FUNCTION dana.enable_admin_write_rls(tbl regclass)
RETURNS TABLE(action text, object text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY SELECT * FROM dana._apply_policy_set(tbl, 'dana_admin',
    dana._api_roles('{anon,authenticated}'), 'true', dana._api_roles('{authenticated}'), '(SELECT dana.is_platform_admin())');
END $$;

COMMENT ON FUNCTION dana.enable_owner_rls(regclass, name) IS
  'Enables RLS and applies the owner policy set: authenticated users select, insert, update and delete only rows whose owner column equals (select dana.uid()). Indexes the owner column. Idempotent; returns what it changed.';
COMMENT ON FUNCTION dana.enable_tenant_rls(regclass, name, name) IS
  'Enables RLS and applies the tenant policy set: authenticated users read rows of their tenant (app_metadata.tenant_id); inside it, members write the rows they own (owner column) and the tenant''s admins (dana.is_tenant_admin()) write every row; without an owner column only the tenant''s admins write. Idempotent; returns what it changed.';
COMMENT ON FUNCTION dana.enable_public_read_rls(regclass, name) IS
  'Enables RLS and applies the public-read policy set: anon and authenticated read every row; with an owner column, users write only the rows they own; without one, only platform admins (dana.is_platform_admin()) write. Idempotent; returns what it changed.';
COMMENT ON FUNCTION dana.enable_admin_write_rls(regclass) IS
  'Enables RLS and applies the platform-catalogue policy set: anon and authenticated read every row, only platform admins (dana.is_platform_admin(): the service role or app_metadata.platform_admin) write; a tenant''s admin does not. Idempotent; returns what it changed.';
