//! Several servers, one PostgreSQL database: writes through one are read through the other, and
//! concurrent versions of one name through both lose nothing. Needs STRONGBOX_TEST_PG_URL (the
//! test script starts PostgreSQL); under CI=true its absence fails.

use crate::common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_postgres_database() {
    let Some(url) = strongbox_store_postgres::test_database_url("twonodes").await else {
        return;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    // Both nodes derive the same root key from one passphrase; the salt lives in the database.
    let pass = dir_a.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple").unwrap();
    let p = pass.to_str().unwrap();
    let a = Server::start(dir_a.path(), &["--store", &url, "--passphrase-file", p]).await;
    // B bootstraps against the same database: same tenant and admin; a fresh client secret for it.
    let b = Server::start(dir_b.path(), &["--store", &url, "--passphrase-file", p]).await;
    assert_eq!(a.creds["tenant_id"], b.creds["tenant_id"]);
    let ta = a.admin_token().await;
    let tb = b.admin_token().await;

    let (s, set) = a
        .call(
            &ta,
            Method::PUT,
            "/secrets/shared",
            Some(json!({"value": "from-a"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, got) = b.call(&tb, Method::GET, "/secrets/shared", None).await;
    assert_eq!(
        (
            s,
            &got["value"],
            &got["id"].as_str().unwrap().rsplit('/').next()
        ),
        (
            200,
            &json!("from-a"),
            &set["id"].as_str().unwrap().rsplit('/').next()
        )
    );

    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, token, url) = if i % 2 == 0 {
            (a.client.clone(), ta.clone(), a.vault_url("dev"))
        } else {
            (b.client.clone(), tb.clone(), b.vault_url("dev"))
        };
        tasks.push(tokio::spawn(async move {
            client
                .put(format!("{url}/secrets/contended?api-version=7.6"))
                .bearer_auth(token)
                .json(&json!({"value": format!("v{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (s, versions) = b
        .call(&tb, Method::GET, "/secrets/contended/versions", None)
        .await;
    assert_eq!((s, versions["value"].as_array().unwrap().len()), (200, 20));
    drop(a);
    drop(b);
    let (code, out, err) = cli(&[
        "audit",
        "verify",
        "--data-dir",
        dir_a.path().to_str().unwrap(),
        "--store",
        &url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dev: ") && out.contains("chain intact"),
        "{out}"
    );
}
