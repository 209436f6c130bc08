//! The RLS matrix: every table of the exposed schema, found in the catalog (so a new table with
//! no known policy set fails here), × anon, alice, bob, admin × select/insert/update/delete.
//! Every action runs in its own transaction as PostgREST would run it (SET LOCAL ROLE and
//! request.jwt.claims), and is rolled back.

use dana_e2e::demo::*;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

#[derive(Clone, Copy, Debug)]
struct Persona {
    name: &'static str,
    role: &'static str,
    user: Option<&'static str>,
    email: Option<&'static str>,
    tenant: Option<&'static str>,
    /// The role in `tenant`: member, admin or owner.
    tenant_role: &'static str,
    platform_admin: bool,
}

impl Persona {
    fn is_tenant_admin(&self) -> bool {
        self.tenant.is_some() && matches!(self.tenant_role, "admin" | "owner")
    }
    fn is_tenant_owner(&self) -> bool {
        self.tenant.is_some() && self.tenant_role == "owner"
    }
}

const ANON: Persona = Persona {
    name: "anon",
    role: "anon",
    user: None,
    email: None,
    tenant: None,
    tenant_role: "",
    platform_admin: false,
};
const fn user(
    name: &'static str,
    id: &'static str,
    email: &'static str,
    tenant: Option<&'static str>,
    tenant_role: &'static str,
    platform_admin: bool,
) -> Persona {
    Persona {
        name,
        role: "authenticated",
        user: Some(id),
        email: Some(email),
        tenant,
        tenant_role,
        platform_admin,
    }
}
/// Everyone who calls the API: nobody, two members of different tenants, the tenant admin of
/// one tenant, the owner of the *other* tenant, and a platform admin of no tenant.
const PERSONAS: [Persona; 6] = [
    ANON,
    user(
        "alice",
        ALICE,
        "alice@demo.dana.dev",
        Some(TENANT_DEMO),
        "member",
        false,
    ),
    user(
        "bob",
        BOB,
        "bob@other.dana.dev",
        Some(TENANT_OTHER),
        "member",
        false,
    ),
    user(
        "admin",
        ADMIN,
        "admin@demo.dana.dev",
        Some(TENANT_DEMO),
        "admin",
        false,
    ),
    user(
        "olga",
        OLGA,
        "olga@other.dana.dev",
        Some(TENANT_OTHER),
        "owner",
        false,
    ),
    user("ops", OPS, "ops@dana.dev", None, "", true),
];

impl Persona {
    fn claims(&self) -> String {
        let mut claims = serde_json::json!({ "role": self.role });
        if let Some(user) = self.user {
            claims["sub"] = user.into();
            claims["email"] = self.email.into();
            let mut app = serde_json::json!({"provider": "email"});
            if let Some(tenant) = self.tenant {
                app["tenant_id"] = tenant.into();
                app["role"] = self.tenant_role.into();
            }
            if self.platform_admin {
                app["platform_admin"] = true.into();
            }
            claims["app_metadata"] = app;
        }
        claims.to_string()
    }
}

/// Who may see and change a table's rows.
#[derive(Debug, Clone)]
enum Rule {
    /// Users see and write only rows whose `column` is their id.
    Owner { column: String },
    /// Users see rows of their tenant; they write those they own (`owner`), the tenant's admins
    /// every row of their tenant.
    Tenant { column: String, owner: String },
    /// Platform catalogues: everyone reads; only platform admins write.
    AdminWrite,
    /// Users read their own rows, platform admins every row; only platform admins write.
    OwnerReadPlatformWrite { column: String },
    /// Users read their own rows, platform admins every row; nobody writes (the service role does).
    OwnerReadPlatformRead { column: String },
    /// Users read their own rows; their writes go through functions only (api_keys).
    OwnerReadOnly { column: String },
    /// Members read their tenant's row (`column`); its admins rename it.
    TenantReadAdminWrite { column: String },
    /// Members read their tenant's memberships and their own; admins manage non-owner members
    /// of their tenant, owners all of them; anyone leaves (unless owner).
    Memberships,
    /// The tenant's admins read and withdraw its invitations; invitees read and decline theirs.
    Invitations,
}

/// The rule of each table: from its dana policy set, else from the list of hand-written ones.
fn rule_of(table: &str, policies: &[(String, String)]) -> Rule {
    let qual_of = |name: &str| {
        policies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, q)| q.clone())
    };
    let column_before = |qual: &str, marker: &str| -> String {
        let at = qual
            .find(marker)
            .unwrap_or_else(|| panic!("{table}: no {marker} in {qual}"));
        qual[..at]
            .trim()
            .trim_start_matches('(')
            .trim()
            .trim_end_matches('=')
            .trim()
            .to_owned()
    };
    if table == "api_keys" {
        return Rule::OwnerReadOnly {
            column: "user_id".into(),
        };
    }
    if let Some(q) = qual_of("dana_owner_select") {
        return Rule::Owner {
            column: column_before(&q, "= ( SELECT dana.uid()"),
        };
    }
    if let Some(q) = qual_of("dana_tenant_update") {
        let tenant = column_before(&q, "= ( SELECT dana.tenant_id()");
        let owner_part = &q[q.find(" AND ").expect("tenant set with owner column") + 5..];
        return Rule::Tenant {
            column: tenant,
            owner: column_before(owner_part.trim_start_matches('('), "= ( SELECT dana.uid()"),
        };
    }
    if qual_of("dana_admin_select").is_some() {
        return Rule::AdminWrite;
    }
    match table {
        "user_subscriptions" => Rule::OwnerReadPlatformWrite {
            column: "user_id".into(),
        },
        "api_usage" => Rule::OwnerReadPlatformRead {
            column: "user_id".into(),
        },
        "tenants" => Rule::TenantReadAdminWrite {
            column: "id".into(),
        },
        "tenant_members" => Rule::Memberships,
        "tenant_invitations" => Rule::Invitations,
        _ => panic!(
            "table public.{table} has no dana policy set and no rule in this test: give it one"
        ),
    }
}

/// The result of one action: rows it returned/affected, or the SQLSTATE it failed with.
type Outcome = Result<i64, SqlState>;

async fn as_persona(db: &mut Client, who: Persona, sql: &str) -> Outcome {
    let tx = db.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE {}", who.role))
        .await
        .unwrap();
    tx.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&who.claims()],
    )
    .await
    .unwrap();
    let outcome = match tx
        .query_one(&format!("WITH r AS ({sql}) SELECT count(*) FROM r"), &[])
        .await
    {
        Ok(row) => Ok(row.get::<_, i64>(0)),
        Err(e) => Err(e.code().cloned().unwrap_or_else(|| panic!("{sql}: {e}"))),
    };
    tx.rollback().await.unwrap();
    outcome
}

/// A copy of some row of `table` matching `filter`, as JSON (read as superuser).
async fn some_row(db: &Client, table: &str, filter: &str) -> Option<serde_json::Value> {
    db.query_opt(
        &format!("SELECT to_jsonb(t) FROM public.{table} t WHERE {filter} LIMIT 1"),
        &[],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

fn insert_copy(table: &str, row: &serde_json::Value) -> String {
    let json = row.to_string().replace('\'', "''");
    format!("INSERT INTO public.{table} OVERRIDING SYSTEM VALUE SELECT * FROM jsonb_populate_record(NULL::public.{table}, '{json}') RETURNING 1")
}

/// Checks every persona against one table, adding what went wrong to `failures`.
async fn check_table(db: &mut Client, table: &str, rule: &Rule, failures: &mut Vec<String>) {
    let mut fail = |who: &Persona, what: &str, got: Outcome, expected: &str| {
        failures.push(format!(
            "{table} × {} × {what}: got {got:?}, expected {expected}",
            who.name
        ));
    };
    let denied = |o: &Outcome| o == &Err(SqlState::INSUFFICIENT_PRIVILEGE);

    for who in PERSONAS {
        // What the persona may see, as a filter over the table (None: nothing; "true": all).
        let visible: Option<String> = visible(rule, &who);
        let expected_visible: i64 = match &visible {
            None => 0,
            Some(filter) => db
                .query_one(
                    &format!("SELECT count(*) FROM public.{table} WHERE {filter}"),
                    &[],
                )
                .await
                .unwrap()
                .get(0),
        };

        // SELECT: exactly the visible rows, and (for the two demo users) at least one of them.
        let seen = as_persona(db, who, &format!("SELECT 1 FROM public.{table}")).await;
        if seen != Ok(expected_visible) {
            fail(
                &who,
                "select",
                seen.clone(),
                &format!("Ok({expected_visible})"),
            );
        }
        if matches!(who.name, "alice" | "bob")
            && expected_visible == 0
            && !matches!(rule, Rule::AdminWrite | Rule::Invitations)
        {
            fail(
                &who,
                "seeds",
                seen,
                "at least one row of this user, or the matrix proves nothing",
            );
        }

        // UPDATE / DELETE / INSERT of rows the persona may not write: nothing happens.
        let foreign = match writable(rule, &who) {
            Writable::All => None,
            Writable::Nothing => Some("true".to_string()),
            Writable::Rows(filter) => Some(format!("NOT ({filter})")),
        };
        if let Some(foreign) = foreign {
            let first_col = first_column(db, table).await;
            for (what, sql) in [
                ("update others' rows", format!("UPDATE public.{table} SET {first_col} = {first_col} WHERE {foreign} RETURNING 1")),
                ("delete others' rows", format!("DELETE FROM public.{table} WHERE {foreign} RETURNING 1")),
            ] {
                let got = as_persona(db, who, &sql).await;
                if got != Ok(0) && !denied(&got) {
                    fail(&who, what, got, "Ok(0) or 42501");
                }
            }
            if let Some(row) = some_row(db, table, &foreign).await {
                let got = as_persona(db, who, &insert_copy(table, &row)).await;
                if !denied(&got) {
                    fail(&who, "insert a copy of another's row", got, "Err(42501)");
                }
            }
        }

        // Taking an own row over for someone else: refused (by a policy, or by a trigger that
        // forbids changing the owner at all).
        if let (Some(user), Rule::Owner { column } | Rule::Tenant { owner: column, .. }) =
            (who.user, rule)
        {
            let own: i64 = db
                .query_one(
                    &format!("SELECT count(*) FROM public.{table} WHERE {column} = '{user}'"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            let other = if user == BOB { ALICE } else { BOB };
            let got = as_persona(db, who, &format!("UPDATE public.{table} SET {column} = '{other}' WHERE {column} = '{user}' RETURNING 1")).await;
            let refused = got.is_err() || (own == 0 && got == Ok(0));
            if !refused {
                fail(&who, "give an own row to another user", got, "an error");
            }
        }
    }
}

/// The rows a persona may see under a rule, as a filter (None: nothing; "true": all).
fn visible(rule: &Rule, who: &Persona) -> Option<String> {
    if matches!(rule, Rule::AdminWrite) {
        return Some("true".into());
    }
    let user = who.user?;
    let tenant = who.tenant.unwrap_or("00000000-0000-0000-0000-000000000000");
    Some(match rule {
        Rule::AdminWrite => unreachable!("answered above"),
        Rule::Owner { column } | Rule::OwnerReadOnly { column } => format!("{column} = '{user}'"),
        Rule::OwnerReadPlatformWrite { column } | Rule::OwnerReadPlatformRead { column } => {
            if who.platform_admin {
                "true".into()
            } else {
                format!("{column} = '{user}'")
            }
        }
        Rule::Tenant { column, .. } | Rule::TenantReadAdminWrite { column } => {
            format!("{column} = '{tenant}'")
        }
        Rule::Memberships => format!("tenant_id = '{tenant}' OR user_id = '{user}'"),
        Rule::Invitations => format!(
            "(tenant_id = '{tenant}' AND {}) OR email = '{}'",
            who.is_tenant_admin(),
            who.email.unwrap_or_default()
        ),
    })
}

enum Writable {
    All,
    Nothing,
    Rows(String),
}

/// The rows a persona may write under a rule.
fn writable(rule: &Rule, who: &Persona) -> Writable {
    if matches!(rule, Rule::AdminWrite | Rule::OwnerReadPlatformWrite { .. }) && who.platform_admin
    {
        return Writable::All;
    }
    let Some(user) = who.user else {
        return Writable::Nothing;
    };
    let tenant = who.tenant.unwrap_or("00000000-0000-0000-0000-000000000000");
    match rule {
        Rule::Owner { column } => Writable::Rows(format!("{column} = '{user}'")),
        Rule::Tenant { column, .. } if who.is_tenant_admin() => {
            Writable::Rows(format!("{column} = '{tenant}'"))
        }
        Rule::Tenant { column, owner } => {
            Writable::Rows(format!("{column} = '{tenant}' AND {owner} = '{user}'"))
        }
        Rule::TenantReadAdminWrite { column } if who.is_tenant_admin() => {
            Writable::Rows(format!("{column} = '{tenant}'"))
        }
        Rule::Memberships => {
            let managed = if who.is_tenant_owner() {
                format!("tenant_id = '{tenant}'")
            } else if who.is_tenant_admin() {
                format!("tenant_id = '{tenant}' AND role <> 'owner'")
            } else {
                "false".into()
            };
            Writable::Rows(format!(
                "({managed}) OR (user_id = '{user}' AND role <> 'owner')"
            ))
        }
        Rule::Invitations => {
            let managed = if who.is_tenant_owner() {
                format!("tenant_id = '{tenant}'")
            } else if who.is_tenant_admin() {
                format!("tenant_id = '{tenant}' AND role <> 'owner'")
            } else {
                "false".into()
            };
            Writable::Rows(format!(
                "({managed}) OR email = '{}'",
                who.email.unwrap_or_default()
            ))
        }
        _ => Writable::Nothing,
    }
}

async fn first_column(db: &Client, table: &str) -> String {
    db.query_one(
        "SELECT quote_ident(attname) FROM pg_attribute
          WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
            AND attidentity = '' AND attgenerated = ''
          ORDER BY attnum LIMIT 1",
        &[&format!("public.{table}")],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn no_persona_reads_or_writes_another_users_rows_in_any_table() {
    let mut db = dana_e2e::connect().await;
    let tables: Vec<String> = dana_e2e::strings(&db, "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1").await;
    assert!(
        tables.len() >= 23,
        "expected the whole Dana schema, found {tables:?}"
    );
    let mut failures = Vec::new();
    for table in &tables {
        let policies: Vec<(String, String)> = db
            .query(
                "SELECT polname::text, coalesce(pg_get_expr(polqual, polrelid), '') FROM pg_policy WHERE polrelid = $1::text::regclass",
                &[&format!("public.{table}")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let rule = rule_of(table, &policies);
        check_table(&mut db, table, &rule, &mut failures).await;
    }
    assert!(
        failures.is_empty(),
        "{} RLS failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn platform_admins_write_catalogues_and_tenant_admins_cannot() {
    let mut db = dana_e2e::connect().await;
    let [_, alice, _, admin, olga, ops] = PERSONAS;
    let sql = "UPDATE public.subscription_tiers SET name = name || '!' RETURNING 1";
    let total: i64 = db
        .query_one("SELECT count(*) FROM public.subscription_tiers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(total > 0);
    assert_eq!(as_persona(&mut db, ops, sql).await, Ok(total));
    for who in [alice, admin, olga, ANON] {
        assert_eq!(as_persona(&mut db, who, sql).await, Ok(0), "{}", who.name);
    }
}

#[tokio::test]
async fn the_audit_finds_no_gap_in_the_exposed_schema() {
    let db = dana_e2e::connect().await;
    let findings: Vec<String> = dana_e2e::strings(
        &db,
        "SELECT table_name || ': ' || finding || ' ' || detail FROM dana.rls_audit('public')",
    )
    .await;
    assert!(findings.is_empty(), "{findings:#?}");
}

#[tokio::test]
async fn every_foreign_key_has_an_index() {
    let db = dana_e2e::connect().await;
    let unindexed: Vec<String> = dana_e2e::strings(&db, "SELECT c.conrelid::regclass || ' (' || c.conname || ')'
               FROM pg_constraint c
              WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
                AND NOT EXISTS (SELECT 1 FROM pg_index i
                                 WHERE i.indrelid = c.conrelid
                                   AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] @> c.conkey
                                   AND (i.indkey::int2[])[0] = c.conkey[1])").await;
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}

#[tokio::test]
async fn bookkeeping_and_keys_stay_out_of_the_api() {
    let db = dana_e2e::connect().await;
    let row = db
        .query_one(
            "SELECT to_regclass('public._sqlx_migrations') IS NULL AND to_regclass('public.refinery_schema_history') IS NULL,
                    to_regclass('dana_meta.schema_history') IS NOT NULL,
                    has_schema_privilege('anon', 'dana_meta', 'USAGE') OR has_schema_privilege('authenticated', 'dana_meta', 'USAGE')",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "a migration history table sits in public"
    );
    assert!(row.get::<_, bool>(1), "dana_meta.schema_history is missing");
    assert!(!row.get::<_, bool>(2), "API roles can reach dana_meta");
    // The encryption key setting is not visible to API roles.
    let mut db = db;
    let tx = db.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE authenticated")
        .await
        .unwrap();
    let err = tx
        .query_one("SHOW dana.secret_keys", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}
