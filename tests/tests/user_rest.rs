//! The supabase crate's PostgREST client, used by the BFF for its own calls as a user: the
//! user's token goes along, so the database's RLS decides what comes back.

use dana_e2e::{demo, setting, Stack};
use dana_supabase::rest::UserRest;
use serde_json::Value;

fn as_user(token: &str) -> UserRest {
    let url = url::Url::parse(&setting("POSTGREST_URL")).unwrap();
    UserRest::new(&url, &setting("ANON_KEY"), token)
}

#[tokio::test]
async fn calls_made_as_a_user_see_only_that_users_rows() {
    let stack = Stack::from_env();
    for (token, owner) in [(&stack.alice_jwt, demo::ALICE), (&stack.bob_jwt, demo::BOB)] {
        let response = as_user(token)
            .from("tasks")
            .select("user_id,title")
            .execute()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let rows: Vec<Value> = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r["user_id"] == owner), "{rows:?}");
    }
}

#[tokio::test]
async fn rpc_and_errors_come_back_as_postgrest_sent_them() {
    let stack = Stack::from_env();
    let client = as_user(&stack.alice_jwt);
    let types = client
        .rpc("integration_types", "{}")
        .execute()
        .await
        .unwrap();
    assert_eq!(types.status(), 200);
    let refused = client
        .from("tasks")
        .insert(r#"{"title": ""}"#)
        .execute()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(error["code"], "23514");
}
