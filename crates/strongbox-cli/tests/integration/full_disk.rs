//! A full disk under the data dir and the server's log: writes get 503 with Retry-After while
//! it is full, and once space is freed the same process writes again, with nothing
//! acknowledged lost and the audit chain intact. Needs root (it mounts a small tmpfs).

use crate::common::*;
use reqwest::Method;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros until the disk refuses; returns the filler's path. The server's log is padded
/// too, so its next line cannot be written.
fn fill(dir: &Path, log: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // Whatever part-chunk fits is written too: the disk is at 100 %.
    while f.write_all(&chunk[..512]).is_ok() {}
    let mut log = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    while log.write_all(b"\n").is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_writes_resume_in_the_same_process() {
    let root = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(root.path(), "48m") else {
        eprintln!("SKIPPED a_full_disk_answers_503…: mounting a tmpfs needs root");
        return;
    };
    let dir = root.path().join("data");
    let mut server = Server::start(&dir, &[]).await;
    let pid = server.child.id();
    let token = server.admin_token().await;
    let mut acked = Vec::new();
    // A secret value near Key Vault's 25 KB limit, so the WAL must grow soon after the disk fills.
    let big = |i: usize| format!("{i:05}-{}", "v".repeat(20_000));
    for i in 0..3 {
        let (s, body) = server
            .call(
                &token,
                Method::PUT,
                &format!("/secrets/before-{i}"),
                Some(json!({"value": big(i)})),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        acked.push((format!("before-{i}"), big(i)));
    }

    let log_path = dir.join(format!("server-{}.log", server.port));
    let filler = fill(&dir, &log_path);
    let mut refused = None;
    for i in 0..400 {
        let name = format!("during-{i}");
        let resp = server
            .client
            .put(format!(
                "{}/secrets/{name}?api-version=7.6",
                server.vault_url("dev")
            ))
            .bearer_auth(&token)
            .json(&json!({"value": big(i)}))
            .send()
            .await
            .expect("every request gets an answer, even with the log on the full disk");
        match resp.status().as_u16() {
            200 => acked.push((name, big(i))),
            503 => {
                let retry_after = resp.headers().get("retry-after").cloned();
                let body: serde_json::Value = resp.json().await.unwrap();
                refused = Some((retry_after, body));
                break;
            }
            other => panic!(
                "write while the disk fills: {other} {}",
                resp.text().await.unwrap()
            ),
        }
    }
    let (retry_after, body) = refused.expect("writes are refused once the disk is full");
    assert!(retry_after.is_some_and(|v| v.to_str().unwrap().parse::<u32>().is_ok()));
    assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");
    // Still full: more writes (and the audited reads) keep answering 503, never 500 or a reset.
    for i in 0..5 {
        let (s, body) = server
            .call(
                &token,
                Method::PUT,
                &format!("/secrets/still-full-{i}"),
                Some(json!({"value": "x"})),
            )
            .await;
        assert_eq!(s, 503, "{body}");
    }
    let (s, _) = server
        .call(
            &token,
            Method::GET,
            &format!("/secrets/{}", acked[0].0),
            None,
        )
        .await;
    assert_eq!(
        s, 503,
        "a read needs its durable audit record too (fail closed)"
    );
    // The management API answers in ARM's shape.
    let sub = server.creds["subscription_id"].as_str().unwrap();
    let mgmt = server
        .client
        .put(format!(
            "https://localhost:{}/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/fullvault?api-version=2023-07-01",
            server.port
        ))
        .bearer_auth(&token)
        .json(&json!({"location": "westeurope", "properties": {
            "tenantId": server.creds["tenant_id"], "sku": {"family": "A", "name": "standard"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(mgmt.status(), 503);
    assert!(mgmt.headers().contains_key("retry-after"));
    let body: serde_json::Value = mgmt.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");

    std::fs::remove_file(&filler).unwrap();
    // The same process writes again at once: no restart, no stuck transaction.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, body) = server
            .call(
                &token,
                Method::PUT,
                "/secrets/after",
                Some(json!({"value": "after"})),
            )
            .await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {s} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acked.push(("after".into(), "after".into()));
    assert!(server.child.try_wait().unwrap().is_none());
    assert_eq!(server.child.id(), pid);
    for (name, value) in &acked {
        let (s, body) = server
            .call(&token, Method::GET, &format!("/secrets/{name}"), None)
            .await;
        assert_eq!(s, 200, "{name}: {body}");
        assert_eq!(body["value"].as_str(), Some(value.as_str()), "{name}");
    }
    server.stop();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("disk has room again"), "{log}");
    assert!(log.contains("log lines were dropped"), "{log}");
    // Once, not per request (the line itself may have been dropped: the log is on that disk).
    let full_lines = log
        .lines()
        .filter(|l| l.contains("the store's disk is full"))
        .count();
    assert!(full_lines <= 1, "{log}");
    let (code, out, err) = cli(&["audit", "verify", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dev: ") && out.contains("chain intact"),
        "{out}"
    );
}
