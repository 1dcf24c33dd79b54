//! What survives: acknowledged writes across kill -9, the audit chain (and its verification),
//! restarts on the same data dir, and the absence of plaintext anywhere on disk or in logs.

use crate::common::*;
use reqwest::Method;
use serde_json::json;
use std::sync::{Arc, Mutex};

pub(crate) fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let mut server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, token, acked, stop) = (
            server.client.clone(),
            token.clone(),
            acked.clone(),
            stop.clone(),
        );
        let url = server.vault_url("dev");
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("crash-{}", i % 5);
                let value = format!("value-{w}-{i}");
                let sent = client
                    .put(format!("{url}/secrets/{name}?api-version=7.6"))
                    .bearer_auth(&token)
                    .json(&json!({"value": value}))
                    .send()
                    .await;
                // Only a complete 200 with a body counts as acknowledged.
                if let Ok(resp) = sent
                    && resp.status() == 200
                    && let Ok(body) = resp.json::<serde_json::Value>().await
                {
                    let version = body["id"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string();
                    acked.lock().unwrap().push((name, version, value));
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few writes before the kill ({})",
        acked.len()
    );

    let server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    for (name, version, value) in &acked {
        let (s, body) = server
            .call(
                &token,
                Method::GET,
                &format!("/secrets/{name}/{version}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "acknowledged {name}/{version} lost after kill -9");
        assert_eq!(body["value"].as_str(), Some(value.as_str()));
    }
    drop(server);
    let (code, out, err) = cli(&["audit", "verify", "--data-dir", &d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dev: ") && out.contains("chain intact"),
        "{out}"
    );
    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{d}/strongbox.db"))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test]
async fn audit_verify_finds_edits_and_cut_tails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let mut server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    for i in 0..6 {
        let (s, _) = server
            .call(
                &token,
                Method::PUT,
                &format!("/secrets/a{i}"),
                Some(json!({"value": "v"})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = server
        .call(&token, Method::GET, "/secrets/missing", None)
        .await;
    assert_eq!(s, 404);
    server.stop();
    let (code, out, _) = cli(&["audit", "verify", "--data-dir", &d, "--vault", "dev"]);
    assert_eq!((code, out.trim()), (0, "dev: 7 records, chain intact"));

    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{d}/strongbox.db"))
        .await
        .unwrap();
    // Edit one record: the break is reported at that record.
    sqlx::query("UPDATE audit_records SET record_json = replace(record_json, 'SecretSet', 'SecretGet') WHERE seq = 3")
        .execute(store.pool())
        .await
        .unwrap();
    let (code, out, _) = cli(&["audit", "verify", "--data-dir", &d]);
    assert_eq!(code, 1);
    assert!(out.contains("chain broken at record 3"), "{out}");
    // Restore it, then cut the tail: the head row still remembers record 7.
    sqlx::query("UPDATE audit_records SET record_json = replace(record_json, 'SecretGet', 'SecretSet') WHERE seq = 3")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(cli(&["audit", "verify", "--data-dir", &d]).0, 0);
    sqlx::query("DELETE FROM audit_records WHERE seq = 7")
        .execute(store.pool())
        .await
        .unwrap();
    let (code, out, _) = cli(&["audit", "verify", "--data-dir", &d]);
    assert_eq!(code, 1);
    assert!(out.contains("chain broken at record 7"), "{out}");
    // Removing a record in the middle.
    sqlx::query("DELETE FROM audit_records WHERE seq = 2")
        .execute(store.pool())
        .await
        .unwrap();
    let (_, out, _) = cli(&["audit", "verify", "--data-dir", &d]);
    assert!(out.contains("chain broken at record 2"), "{out}");
}

#[tokio::test]
async fn no_plaintext_on_disk_or_in_logs_and_restart_reuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long enough passphrase\n").unwrap();
    let pass = pass.to_str().unwrap().to_string();
    let mut server = Server::start(dir.path(), &["--passphrase-file", &pass]).await;
    let creds_before = server.creds.clone();
    let token = server.admin_token().await;
    let values: Vec<String> = (0..5).map(|_| random_value()).collect();
    for (i, v) in values.iter().enumerate() {
        let (s, _) = server
            .call(
                &token,
                Method::PUT,
                &format!("/secrets/plain{i}"),
                Some(json!({"value": v, "tags": {"t": "x"}})),
            )
            .await;
        assert_eq!(s, 200);
        let (s, _) = server
            .call(&token, Method::GET, &format!("/secrets/plain{i}"), None)
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = server
        .call(&token, Method::POST, "/secrets/plain0/backup", None)
        .await;
    assert_eq!(s, 200);
    // A malformed body carrying a value-like string must not echo it.
    let resp = server
        .client
        .put(format!(
            "{}/secrets/plain9?api-version=7.6",
            server.vault_url("dev")
        ))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"value\": 12345{}", values[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains(&values[0]));
    server.stop();
    // The scan does find what is there (the tenant id is stored in clear).
    assert!(
        !files_containing(
            dir.path(),
            creds_before["tenant_id"].as_str().unwrap().as_bytes()
        )
        .is_empty()
    );
    for v in &values {
        let hits = files_containing(dir.path(), v.as_bytes());
        assert!(hits.is_empty(), "plaintext value found in {hits:?}");
    }

    // Same data dir: same tenant, client and secret; values still readable.
    let server = Server::start(dir.path(), &["--passphrase-file", &pass]).await;
    assert_eq!(server.creds["client_secret"], creds_before["client_secret"]);
    assert_eq!(server.creds["tenant_id"], creds_before["tenant_id"]);
    let token = server.admin_token().await;
    let (s, body) = server
        .call(&token, Method::GET, "/secrets/plain3", None)
        .await;
    assert_eq!((s, body["value"].as_str()), (200, Some(values[3].as_str())));
    drop(server);

    // The wrong passphrase is refused clearly at start, not at the first read.
    let wrong = dir.path().join("wrong-pass");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let (code, _, err) = cli(&[
        "server",
        "--dev",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code, 3);
    assert!(err.contains("root key does not open"), "{err}");
    // An empty passphrase is refused outright.
    let (code, _, err) = cli(&[
        "server",
        "--dev",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--passphrase-file",
        "/dev/null",
    ]);
    assert_eq!(code, 3);
    assert!(err.contains("must have at least 12 characters"), "{err}");
}
