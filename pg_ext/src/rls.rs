//! RLS policy sets and the audit of RLS gaps.
//!
//! The policy-set helpers (`dana.enable_owner_rls` and friends) are DDL generators written in
//! PL/pgSQL in `sql/rls_policies.sql`. The audit lives here because one of its checks needs the
//! policy's expression tree: whether a helper call is wrapped in a sub-select (evaluated once per
//! statement) or called bare (once per row) cannot be told reliably from the deparsed text.

use pgrx::prelude::*;
use std::collections::BTreeSet;
use std::ffi::{c_void, CStr, CString};

extension_sql_file!(
    "../sql/rls_policies.sql",
    name = "rls_policies",
    requires = ["claims_comments"]
);

/// One finding of [`rls_audit`].
struct Finding {
    table: String,
    finding: &'static str,
    policy: Option<String>,
    detail: String,
}

/// Lists the RLS gaps of the tables in `schema`: one row per finding.
#[pg_extern(stable)]
fn rls_audit(
    schema: default!(&str, "'public'"),
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(finding, String),
        name!(policy, Option<String>),
        name!(detail, String),
    ),
> {
    let mut findings = Vec::new();
    Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
        table_findings(client, schema, &mut findings)?;
        policy_expression_findings(client, schema, &mut findings)?;
        overlapping_policy_findings(client, schema, &mut findings)?;
        Ok(())
    })
    .unwrap_or_else(|e| error!("dana.rls_audit: {e}"));
    findings
        .sort_by(|a, b| (&a.table, a.finding, &a.policy).cmp(&(&b.table, b.finding, &b.policy)));
    TableIterator::new(
        findings
            .into_iter()
            .map(|f| (f.table, f.finding.to_owned(), f.policy, f.detail)),
    )
}

/// Tables without RLS, and tables with RLS but no policy (nobody but the owner gets a row).
fn table_findings(
    client: &pgrx::spi::SpiClient<'_>,
    schema: &str,
    findings: &mut Vec<Finding>,
) -> Result<(), pgrx::spi::Error> {
    let rows = client.select(
        "SELECT c.oid::regclass::text, c.relrowsecurity,
                EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
        None,
        &[schema.into()],
    )?;
    for row in rows {
        let table: String = row.get(1)?.unwrap_or_default();
        let rls: bool = row.get(2)?.unwrap_or(false);
        let has_policy: bool = row.get(3)?.unwrap_or(false);
        if !rls {
            findings.push(Finding {
                table,
                finding: "rls_disabled",
                policy: None,
                detail: "row level security is disabled: every API role with a grant reads and writes every row".into(),
            });
        } else if !has_policy {
            findings.push(Finding {
                table,
                finding: "no_policy",
                policy: None,
                detail: "row level security is enabled but no policy exists: API roles see no rows"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Per-row helper calls and unindexed columns, found by walking each policy's expressions.
///
/// Helper calls count in both expressions. Columns count only in the `USING` expression of a
/// permissive policy: that is what filters the table's rows (a `WITH CHECK` looks at one new
/// row, and a restrictive policy is ANDed with a permissive one that does the filtering), and a
/// policy needs one indexed column to filter by, not all of them.
fn policy_expression_findings(
    client: &pgrx::spi::SpiClient<'_>,
    schema: &str,
    findings: &mut Vec<Finding>,
) -> Result<(), pgrx::spi::Error> {
    let rows = client.select(
        "SELECT p.polrelid, p.polrelid::regclass::text, p.polname::text,
                p.polqual::text, p.polwithcheck::text, p.polpermissive
           FROM pg_policy p
           JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1
          ORDER BY 2, 3",
        None,
        &[schema.into()],
    )?;
    for row in rows {
        let relid: pg_sys::Oid = row.get(1)?.unwrap_or(pg_sys::InvalidOid);
        let table: String = row.get(2)?.unwrap_or_default();
        let policy: String = row.get(3)?.unwrap_or_default();
        let permissive: bool = row.get(6)?.unwrap_or(true);
        let mut walk = PolicyWalk::default();
        if let Some(qual) = row.get::<String>(4)? {
            walk.walk_node_tree(&qual);
        }
        if !permissive {
            walk.columns.clear();
        }
        let mut check_walk = PolicyWalk::default();
        if let Some(check) = row.get::<String>(5)? {
            check_walk.walk_node_tree(&check);
        }
        walk.unwrapped_calls.append(&mut check_walk.unwrapped_calls);
        for call in &walk.unwrapped_calls {
            findings.push(Finding {
                table: table.clone(),
                finding: "unwrapped_call",
                policy: Some(policy.clone()),
                detail: format!("{call}() is evaluated once per row; write (select {call}()) so it runs once per statement"),
            });
        }
        let mut unindexed = Vec::new();
        let mut any_indexed = false;
        for attnum in &walk.columns {
            let indexed = client
                .select(
                    "SELECT a.attname::text, EXISTS (SELECT 1 FROM pg_index i
                                         WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum)
                       FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum = $2",
                    Some(1),
                    &[relid.into(), (*attnum).into()],
                )?
                .first()
                .get_two::<String, bool>()?;
            match indexed {
                (Some(column), Some(false)) => unindexed.push(column),
                (_, Some(true)) => any_indexed = true,
                _ => {}
            }
        }
        if !any_indexed {
            for column in unindexed {
                findings.push(Finding {
                    table: table.clone(),
                    finding: "unindexed_policy_column",
                    policy: Some(policy.clone()),
                    detail: format!(
                        "the policy filters rows on column \"{column}\", and no index leads with it (nor with any other column it filters on)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Several permissive policies for one role and action: PostgreSQL ORs them, so each is
/// evaluated for every row and the widest one wins, which is rarely what was meant.
fn overlapping_policy_findings(
    client: &pgrx::spi::SpiClient<'_>,
    schema: &str,
    findings: &mut Vec<Finding>,
) -> Result<(), pgrx::spi::Error> {
    let rows = client.select(
        "SELECT p.polrelid::regclass::text, r.role, a.action,
                string_agg(p.polname::text, ', ' ORDER BY p.polname)
           FROM pg_policy p
           JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL (SELECT CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x)::text END
                                FROM unnest(p.polroles) x) r(role)
          CROSS JOIN LATERAL unnest(CASE p.polcmd WHEN 'r' THEN '{select}'::text[]
                                                  WHEN 'a' THEN '{insert}' WHEN 'w' THEN '{update}'
                                                  WHEN 'd' THEN '{delete}'
                                                  ELSE '{select,insert,update,delete}' END) a(action)
          WHERE n.nspname = $1 AND p.polpermissive
          GROUP BY 1, 2, 3 HAVING count(*) > 1
          ORDER BY 1, 2, 3",
        None,
        &[schema.into()],
    )?;
    for row in rows {
        let role: String = row.get(2)?.unwrap_or_default();
        let action: String = row.get(3)?.unwrap_or_default();
        let policies: String = row.get(4)?.unwrap_or_default();
        findings.push(Finding {
            table: row.get(1)?.unwrap_or_default(),
            finding: "multiple_permissive_policies",
            policy: Some(policies.clone()),
            detail: format!("role {role} has several permissive {action} policies ({policies}); each runs for every row"),
        });
    }
    Ok(())
}

/// What a walk over a policy's expression found.
#[derive(Default)]
struct PolicyWalk {
    /// Helper calls (`auth.*`, `dana.*`, `current_setting`) outside any sub-select.
    unwrapped_calls: BTreeSet<String>,
    /// Attribute numbers of the table's columns the expression reads directly.
    columns: BTreeSet<i16>,
}

impl PolicyWalk {
    fn walk_node_tree(&mut self, node_tree: &str) {
        let Ok(text) = CString::new(node_tree) else {
            return;
        };
        // SAFETY: pg_node_tree text as stored in pg_policy parses back into an expression.
        unsafe {
            let node = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Node;
            visit(node, self as *mut PolicyWalk as *mut c_void);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn visit(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    unsafe {
        let walk = &mut *(context as *mut PolicyWalk);
        if pgrx::is_a(node, pg_sys::NodeTag::T_SubLink) {
            // `(select dana.uid())` becomes an InitPlan: once per statement. Don't look inside.
            return false;
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_Var) {
            let var = &*(node as *mut pg_sys::Var);
            if var.varlevelsup == 0 && var.varattno > 0 {
                walk.columns.insert(var.varattno);
            }
        } else if pgrx::is_a(node, pg_sys::NodeTag::T_FuncExpr) {
            let func = &*(node as *mut pg_sys::FuncExpr);
            if let Some(name) = helper_call_name(func.funcid) {
                walk.unwrapped_calls.insert(name);
            }
        }
        pg_sys::expression_tree_walker(node, Some(visit), context)
    }
}

/// `schema.name` of a function whose per-row evaluation is worth flagging, else None.
unsafe fn helper_call_name(funcid: pg_sys::Oid) -> Option<String> {
    unsafe {
        let name_ptr = pg_sys::get_func_name(funcid);
        let schema_ptr = pg_sys::get_namespace_name(pg_sys::get_func_namespace(funcid));
        if name_ptr.is_null() || schema_ptr.is_null() {
            return None;
        }
        let name = CStr::from_ptr(name_ptr).to_string_lossy();
        let schema = CStr::from_ptr(schema_ptr).to_string_lossy();
        let flagged = matches!(&*schema, "auth" | "dana") || name == "current_setting";
        flagged.then(|| format!("{schema}.{name}"))
    }
}

extension_sql!(
    r#"
COMMENT ON FUNCTION dana.rls_audit(text) IS
  'RLS gaps in a schema, one row per finding: rls_disabled, no_policy, unwrapped_call (auth.*, dana.* or current_setting evaluated per row), unindexed_policy_column, multiple_permissive_policies.';
"#,
    name = "rls_audit_comment",
    requires = [rls_audit]
);
