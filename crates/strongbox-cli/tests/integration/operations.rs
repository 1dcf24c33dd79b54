//! Day-two operations on a serving store: online backup and restore, data key rotation (with a
//! crash in the middle of the re-encryption) and rekey, through the real binary.

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (name, version, value, when acknowledged)
type Acked = Arc<Mutex<Vec<(String, String, String, Instant)>>>;

/// Writers putting new secrets and versions until `stop`; every 200 with a body is recorded.
fn spawn_writers(
    server: &Server,
    token: &str,
    writers: usize,
    prefix: &str,
) -> (Arc<AtomicBool>, Acked, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let handles = (0..writers)
        .map(|w| {
            let (client, token, acked, stop) = (
                server.client.clone(),
                token.to_string(),
                acked.clone(),
                stop.clone(),
            );
            let (url, prefix) = (server.vault_url("dev"), prefix.to_string());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("{prefix}-{w}-{}", i % 40);
                    let value = format!("value-{w}-{i}-{}", random_value());
                    let sent = client
                        .put(format!("{url}/secrets/{name}?api-version=7.6"))
                        .bearer_auth(&token)
                        .json(&json!({"value": value}))
                        .send()
                        .await;
                    if let Ok(resp) = sent
                        && resp.status() == 200
                        && let Ok(body) = resp.json::<Value>().await
                    {
                        let version = body["id"].as_str().unwrap().rsplit('/').next().unwrap();
                        acked.lock().unwrap().push((
                            name,
                            version.to_string(),
                            value,
                            Instant::now(),
                        ));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    (stop, acked, handles)
}

async fn stop_writers(stop: Arc<AtomicBool>, handles: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.await.unwrap();
    }
}

/// Every acknowledged version reads back with its value.
async fn assert_all_readable(server: &Server, writes: &[(String, String, String, Instant)]) {
    let token = server.admin_token().await;
    for (name, version, value, _) in writes {
        let (status, body) = server
            .call(
                &token,
                reqwest::Method::GET,
                &format!("/secrets/{name}/{version}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{name}/{version}: {body}");
        assert_eq!(body["value"], value.as_str(), "{name}/{version}");
    }
}

async fn sqlite(dir: &Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions as _;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("strongbox.db"))
        .read_only(true)
        .connect()
        .await
        .unwrap()
}

/// Stored values sealed under data key `id` (its id is bytes 2-5 of the sealed format).
async fn values_under(dir: &Path, id: u32) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM secret_versions WHERE substr(sealed_value, 2, 4) = ?1")
        .bind(id.to_be_bytes().to_vec())
        .fetch_one(&mut sqlite(dir).await)
        .await
        .unwrap()
}

async fn data_key_ids(dir: &Path) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM data_keys ORDER BY id")
        .fetch_all(&mut sqlite(dir).await)
        .await
        .unwrap()
}

async fn keyring_audit(dir: &Path) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT operation FROM audit_records WHERE vault_id = 'system:keyring' ORDER BY seq",
    )
    .fetch_all(&mut sqlite(dir).await)
    .await
    .unwrap()
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = cli(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// `ok` with the store and root arguments appended.
fn ok_on(args: &[&str], store: &[&str]) -> String {
    ok(&[args, store].concat())
}

fn refused(args: &[&str], why: &str) -> String {
    let (code, _, err) = cli(args);
    assert_ne!(code, 0, "{args:?} should have been refused ({why})");
    err
}

async fn run_cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_concurrent_writes_restores_every_write_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (d, file) = (a.to_str().unwrap(), dir.path().join("store.sbb"));
    let server = Server::start(&a, &[]).await;
    let token = server.admin_token().await;
    let (stop, acked, handles) = spawn_writers(&server, &token, 6, "bk");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let began = Instant::now();
    let (code, out, err) = run_cli(
        [
            "admin",
            "backup",
            "--data-dir",
            d,
            "--to",
            file.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writers(stop, handles).await;
    let acked = acked.lock().unwrap().clone();
    let before: Vec<_> = acked.iter().filter(|w| w.3 < began).cloned().collect();
    let after = acked.len() - before.len();
    assert!(
        before.len() > 30 && after > 0,
        "{} before, {after} during/after",
        before.len()
    );
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["sealing"], "root");
    // Nothing of a value is in the file in plaintext.
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"value-"));
    ok(&[
        "admin",
        "backup",
        "verify",
        file.to_str().unwrap(),
        "--data-dir",
        d,
    ]);

    // Restored under the same root key into a new data dir, served by a new server.
    let key = a.join("root.key");
    let key = key.to_str().unwrap();
    let restored: Value = serde_json::from_str(&ok(&[
        "admin",
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        b.to_str().unwrap(),
        "--key-file",
        key,
    ]))
    .unwrap();
    assert!(restored["counts"]["secretVersions"].as_i64().unwrap() >= before.len() as i64);
    let again = refused(
        &[
            "admin",
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--data-dir",
            b.to_str().unwrap(),
            "--key-file",
            key,
        ],
        "the target holds a store",
    );
    assert!(again.contains("already holds a store"), "{err}");
    let back = Server::start(&b, &["--key-file", key]).await;
    assert_all_readable(&back, &before).await;
    let verified = ok(&["audit", "verify", "--data-dir", b.to_str().unwrap()]);
    assert!(
        verified.contains("dev:") && verified.contains("system:keyring"),
        "{verified}"
    );
    assert!(!verified.contains("broken"), "{verified}");
    assert!(keyring_audit(&a).await.contains(&"StoreBackup".to_string()));
    assert!(
        keyring_audit(&b)
            .await
            .contains(&"StoreRestore".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_foreign_or_wrongly_opened_backup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, other) = (dir.path().join("a"), dir.path().join("other"));
    let d = a.to_str().unwrap();
    let server = Server::start(&a, &[]).await;
    let token = server.admin_token().await;
    for i in 0..5 {
        let (s, _) = server
            .call(
                &token,
                reqwest::Method::PUT,
                &format!("/secrets/d{i}"),
                Some(json!({"value": random_value()})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let _other = Server::start(&other, &[]).await;
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    ok(&[
        "admin",
        "backup",
        "--data-dir",
        d,
        "--to",
        &path("good.sbb"),
    ]);
    ok(&[
        "admin",
        "backup",
        "--data-dir",
        other.to_str().unwrap(),
        "--to",
        &path("foreign.sbb"),
    ]);
    refused(
        &[
            "admin",
            "backup",
            "--data-dir",
            d,
            "--to",
            &path("good.sbb"),
        ],
        "the file exists",
    );

    // Another store's backup does not open with this root.
    let err = refused(
        &[
            "admin",
            "backup",
            "verify",
            &path("foreign.sbb"),
            "--data-dir",
            d,
        ],
        "foreign",
    );
    assert!(err.contains("does not open"), "{err}");
    // A flipped byte in a chunk, a cut file, a swapped header.
    let good = std::fs::read(path("good.sbb")).unwrap();
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 1;
    std::fs::write(path("flipped.sbb"), &flipped).unwrap();
    let err = refused(
        &[
            "admin",
            "backup",
            "verify",
            &path("flipped.sbb"),
            "--data-dir",
            d,
        ],
        "flipped",
    );
    assert!(err.contains("damaged"), "{err}");
    std::fs::write(path("cut.sbb"), &good[..good.len() - 100]).unwrap();
    refused(
        &[
            "admin",
            "backup",
            "verify",
            &path("cut.sbb"),
            "--data-dir",
            d,
        ],
        "cut",
    );
    std::fs::write(path("short.sbb"), &good[..good.len() * 2 / 3]).unwrap();
    refused(
        &[
            "admin",
            "backup",
            "verify",
            &path("short.sbb"),
            "--data-dir",
            d,
        ],
        "chunks missing",
    );
    std::fs::write(path("junk.sbb"), b"not a backup at all").unwrap();
    refused(
        &[
            "admin",
            "backup",
            "verify",
            &path("junk.sbb"),
            "--data-dir",
            d,
        ],
        "junk",
    );
    // Nothing damaged is ever restored.
    let target = dir.path().join("never");
    refused(
        &[
            "admin",
            "restore",
            "--from",
            &path("flipped.sbb"),
            "--data-dir",
            target.to_str().unwrap(),
            "--key-file",
            a.join("root.key").to_str().unwrap(),
        ],
        "damaged",
    );
    assert!(!target.join("strongbox.db").exists());

    // Sealed under a passphrase: opens with it alone (no root), not with another.
    std::fs::write(path("pass"), "a backup passphrase\n").unwrap();
    std::fs::write(path("wrong"), "another passphrase\n").unwrap();
    ok(&[
        "admin",
        "backup",
        "--data-dir",
        d,
        "--to",
        &path("pass.sbb"),
        "--backup-passphrase-file",
        &path("pass"),
    ]);
    refused(
        &[
            "admin",
            "backup",
            "verify",
            &path("pass.sbb"),
            "--backup-passphrase-file",
            &path("wrong"),
        ],
        "wrong passphrase",
    );
    ok(&[
        "admin",
        "backup",
        "verify",
        &path("pass.sbb"),
        "--backup-passphrase-file",
        &path("pass"),
        "--data-dir",
        &path("nowhere"),
    ]);
    // …and restores under a new root of the operator's choosing, with every value.
    let fresh = dir.path().join("fresh");
    ok(&[
        "admin",
        "restore",
        "--from",
        &path("pass.sbb"),
        "--data-dir",
        fresh.to_str().unwrap(),
        "--backup-passphrase-file",
        &path("pass"),
    ]);
    assert!(fresh.join("root.key").exists());
    let back = Server::start(&fresh, &[]).await;
    let t = back.admin_token().await;
    let (s, body) = back
        .call(&t, reqwest::Method::GET, "/secrets/d3", None)
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_survives_kill_9_mid_reencryption_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().to_path_buf();
    let d = a.to_str().unwrap().to_string();
    let port = free_port();
    let slow = ["--reencrypt-pause-ms", "400"];
    let mut server = Server::start_on(&a, port, &slow).await;
    let token = server.admin_token().await;
    // Enough versions for several pages of re-encryption.
    let (stop, acked, handles) = spawn_writers(&server, &token, 6, "rot");
    while acked.lock().unwrap().len() < 500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _, err) = run_cli(
        ["admin", "rotate-data-key", "--no-wait", "--data-dir", &d]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let initial = values_under(&a, 1).await;
    assert!(initial >= 500, "{initial}");
    // Kill -9 once the server's re-encryption is part way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = values_under(&a, 1).await;
        if left < initial - 64 && left > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress ({left} of {initial} left)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    stop_writers(stop, handles).await;
    assert!(
        values_under(&a, 1).await > 0,
        "the re-encryption finished before the kill"
    );
    assert_eq!(data_key_ids(&a).await, vec![1, 2]);

    // Restarted: it resumes (under load again) and retires key 1 when nothing uses it.
    let server = Server::start_on(&a, port, &[]).await;
    let token = server.admin_token().await;
    let (stop, more, handles) = spawn_writers(&server, &token, 4, "rot2");
    let deadline = Instant::now() + Duration::from_secs(60);
    while data_key_ids(&a).await != vec![2] {
        assert!(Instant::now() < deadline, "key 1 was never retired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_writers(stop, handles).await;
    assert_eq!(values_under(&a, 1).await, 0);
    let mut all = acked.lock().unwrap().clone();
    all.extend(more.lock().unwrap().iter().cloned());
    assert_all_readable(&server, &all).await;
    let ops = keyring_audit(&a).await;
    assert!(
        ops.contains(&"DataKeyRotate".into()) && ops.contains(&"DataKeyRetire".into()),
        "{ops:?}"
    );
    let verified = ok(&["audit", "verify", "--data-dir", &d]);
    assert!(!verified.contains("broken"), "{verified}");
    // A second rotation from the command runs to the end in the foreground.
    let out: Value =
        serde_json::from_str(&ok(&["admin", "rotate-data-key", "--data-dir", &d])).unwrap();
    assert_eq!(out["keyIds"], json!([3]));
    assert_eq!(out["pending"], false);
    assert_all_readable(&server, &all[..50]).await;
}

fn server_refused(dir: &Path, extra: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(["server", "--dev", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server started with {extra:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_refuses_the_old_root_at_start_and_accepts_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let d = a.to_str().unwrap();
    let port = free_port();
    let mut server = Server::start_on(&a, port, &[]).await;
    let token = server.admin_token().await;
    let value = random_value();
    let (s, _) = server
        .call(
            &token,
            reqwest::Method::PUT,
            "/secrets/kept",
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(s, 200);
    let new_key = dir.path().join("new.key");
    let new_key = new_key.to_str().unwrap();
    // Rekeyed while the server serves: it keeps serving (it holds the unsealed keyring).
    ok(&["admin", "rekey", "--data-dir", d, "--new-key-file", new_key]);
    refused(
        &["admin", "rekey", "--data-dir", d, "--new-key-file", new_key],
        "the old root",
    );
    let (s, body) = server
        .call(&token, reqwest::Method::GET, "/secrets/kept", None)
        .await;
    assert_eq!((s, body["value"].as_str()), (200, Some(value.as_str())));
    server.stop();

    let err = server_refused(&a, &[]);
    assert!(err.contains("does not open"), "{err}");
    let server = Server::start_on(&a, port, &["--key-file", new_key]).await;
    let token = server.admin_token().await;
    let (s, body) = server
        .call(&token, reqwest::Method::GET, "/secrets/kept", None)
        .await;
    assert_eq!((s, body["value"].as_str()), (200, Some(value.as_str())));
    drop(server);

    // From the key file to a passphrase: then the key file is refused.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long root passphrase\n").unwrap();
    let pass = pass.to_str().unwrap();
    ok(&[
        "admin",
        "rekey",
        "--data-dir",
        d,
        "--key-file",
        new_key,
        "--new-passphrase-file",
        pass,
    ]);
    let err = server_refused(&a, &["--key-file", new_key]);
    assert!(err.contains("does not open"), "{err}");
    let server = Server::start_on(&a, port, &["--passphrase-file", pass]).await;
    let token = server.admin_token().await;
    let (s, body) = server
        .call(&token, reqwest::Method::GET, "/secrets/kept", None)
        .await;
    assert_eq!((s, body["value"].as_str()), (200, Some(value.as_str())));
    let ops = keyring_audit(&a).await;
    assert_eq!(
        ops.iter().filter(|o| *o == "RootKeyRekey").count(),
        2,
        "{ops:?}"
    );
}

async fn pg_key_ids(url: &str) -> Vec<i64> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let ids = sqlx::query_scalar("SELECT id FROM data_keys ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids
}

/// The data key a stored version is sealed under.
async fn pg_key_of(url: &str, name: &str, version: &str) -> u32 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let sealed: Vec<u8> = sqlx::query_scalar(
        "SELECT sealed_value FROM secret_versions WHERE name = $1 AND version = $2",
    )
    .bind(name.to_ascii_lowercase())
    .bind(version)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    u32::from_be_bytes(sealed[1..5].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_on_shared_postgres_reaches_every_server_rekey_refuses_the_old_root_and_backup_restores()
 {
    let Some(url) = strongbox_store_postgres::test_database_url("rotation").await else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pass = dir_a.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple").unwrap();
    let p = pass.to_str().unwrap();
    let store = ["--store", url.as_str(), "--passphrase-file", p];
    let a = Server::start(dir_a.path(), &store).await;
    let b = Server::start(dir_b.path(), &store).await;
    let tb = b.admin_token().await;
    let (stop, acked, handles) = spawn_writers(&b, &tb, 4, "pg");
    while acked.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Rotated by the command on A's side; B, which did nothing, seals under key 2 within a second.
    let d = dir_a.path().to_str().unwrap();
    ok_on(
        &["admin", "rotate-data-key", "--no-wait", "--data-dir", d],
        &store,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, body) = b
        .call(
            &tb,
            reqwest::Method::PUT,
            "/secrets/after-rotation",
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let version = body["id"].as_str().unwrap().rsplit('/').next().unwrap();
    assert_eq!(pg_key_of(&url, "after-rotation", version).await, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg_key_ids(&url).await != vec![2] {
        assert!(Instant::now() < deadline, "key 1 was never retired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_writers(stop, handles).await;
    let all = acked.lock().unwrap().clone();
    assert_all_readable(&a, &all).await;

    // Rekey to a key file: the shared passphrase is refused from then on.
    let key = dir_a.path().join("new.key");
    let new_key = ["--new-key-file", key.to_str().unwrap()];
    ok_on(
        &["admin", "rekey", "--data-dir", d],
        &[&new_key[..], &store[..]].concat(),
    );
    drop((a, b));
    let err = server_refused(dir_b.path(), &store);
    assert!(err.contains("does not open"), "{err}");
    let c = Server::start(
        dir_b.path(),
        &["--store", &url, "--key-file", key.to_str().unwrap()],
    )
    .await;
    assert_all_readable(&c, &all[..20]).await;
    // Backed up while C serves, restored into a new database, served from there.
    let backup = dir_a.path().join("pg.sbb");
    let k = key.to_str().unwrap();
    let pg = ["--store", url.as_str(), "--key-file", k];
    let file = backup.to_str().unwrap();
    let out: Value = serde_json::from_str(&ok_on(
        &["admin", "backup", "--to", file, "--data-dir", d],
        &pg,
    ))
    .unwrap();
    assert_eq!(out["sealing"], "root");
    ok_on(&["admin", "backup", "verify", file, "--data-dir", d], &pg);
    drop(c);
    let new_url = strongbox_store_postgres::test_database_url("restored")
        .await
        .unwrap();
    let dir_r = tempfile::tempdir().unwrap();
    let r = dir_r.path().to_str().unwrap();
    let restore = [
        "admin",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        r,
        "--store",
        new_url.as_str(),
        "--key-file",
        k,
    ];
    ok(&restore);
    let err = refused(&restore, "the database holds a store");
    assert!(err.contains("already holds a store"), "{err}");
    let restored = Server::start(dir_r.path(), &["--store", &new_url, "--key-file", k]).await;
    assert_all_readable(&restored, &all).await;
    let verified = ok(&["audit", "verify", "--data-dir", r, "--store", &new_url]);
    assert!(
        verified.contains("dev:") && !verified.contains("broken"),
        "{verified}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_backup_restores_after_its_data_key_is_retired_and_after_a_rekey() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let d = a.to_str().unwrap();
    let port = free_port();
    let mut server = Server::start_on(&a, port, &[]).await;
    let token = server.admin_token().await;
    let value = random_value();
    let (s, _) = server
        .call(
            &token,
            reqwest::Method::PUT,
            "/secrets/saved",
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, blob) = server
        .call(&token, reqwest::Method::POST, "/secrets/saved/backup", None)
        .await;
    assert_eq!(s, 200);
    // Rotated, re-encrypted, and the key the blob was made under retired.
    ok(&["admin", "rotate-data-key", "--data-dir", d]);
    assert_eq!(data_key_ids(&a).await, [2]);
    let gone = |server: &Server, token: String| {
        let (client, url) = (server.client.clone(), server.vault_url("dev"));
        async move {
            for (method, path) in [
                ("DELETE", "/secrets/saved"),
                ("DELETE", "/deletedsecrets/saved"),
            ] {
                let r = client
                    .request(
                        method.parse().unwrap(),
                        format!("{url}{path}?api-version=7.6"),
                    )
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{method} {path}: {}", r.status());
            }
        }
    };
    gone(&server, token.clone()).await;
    let (s, restored) = server
        .call(
            &token,
            reqwest::Method::POST,
            "/secrets/restore",
            Some(blob.clone()),
        )
        .await;
    assert_eq!(s, 200, "{restored}");
    let (s, body) = server
        .call(&token, reqwest::Method::GET, "/secrets/saved", None)
        .await;
    assert_eq!((s, body["value"].as_str()), (200, Some(value.as_str())));

    // And under a new root.
    let new_key = dir.path().join("new.key");
    ok(&[
        "admin",
        "rekey",
        "--data-dir",
        d,
        "--new-key-file",
        new_key.to_str().unwrap(),
    ]);
    server.stop();
    let server = Server::start_on(&a, port, &["--key-file", new_key.to_str().unwrap()]).await;
    let token = server.admin_token().await;
    gone(&server, token.clone()).await;
    let (s, restored) = server
        .call(
            &token,
            reqwest::Method::POST,
            "/secrets/restore",
            Some(blob),
        )
        .await;
    assert_eq!(s, 200, "{restored}");
}
