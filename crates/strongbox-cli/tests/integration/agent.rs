//! The edge agent as a real process against the real server: activation by key (once), device
//! secrets pushed with the device's Get/Set grant and readable by an authorized user with the
//! agent stopped, restore and stale-fix by `agent sync-secrets`, the `agent run` loop and its
//! loopback activation page (CSRF token, host check), and no plaintext secret in the data dir.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary; (exit code, stdout, stderr).
fn run(args: &[&str], creds: Option<&Path>) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args);
    if let Some(p) = creds {
        c.arg("--credentials").arg(p);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The secret names and outcomes of a sync report line: `name (outcome)` pairs.
fn report(out: &str) -> Vec<(String, String)> {
    let line = out
        .lines()
        .find(|l| l.starts_with("device secrets synced"))
        .unwrap_or_else(|| panic!("no sync report in {out}"));
    let rest = line.split_once(": ").unwrap().1;
    rest.split(") ")
        .map(|p| {
            let (n, o) = p.trim_end_matches(')').split_once(" (").unwrap();
            (n.to_string(), o.to_string())
        })
        .collect()
}

struct Admin<'a> {
    server: &'a Server,
    http: reqwest::Client,
    token: String,
}

impl Admin<'_> {
    async fn secret(
        &self,
        vault: &str,
        name: &str,
        method: Method,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!(
            "{}/secrets/{name}?api-version=7.6",
            self.server.vault_url(vault)
        );
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }
    async fn value(&self, vault: &str, name: &str) -> Option<String> {
        let (s, v) = self.secret(vault, name, Method::GET, None).await;
        (s == 200).then(|| v["value"].as_str().unwrap().to_string())
    }
    /// Deletes and purges a secret, as a person with those rights would.
    async fn destroy(&self, vault: &str, name: &str) {
        let (s, v) = self.secret(vault, name, Method::DELETE, None).await;
        assert_eq!(s, 200, "{v}");
        let url = format!(
            "{}/deletedsecrets/{name}?api-version=7.6",
            self.server.vault_url(vault)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self
                .http
                .delete(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .status();
            if s.as_u16() == 204 {
                break;
            }
            assert!(Instant::now() < deadline, "purge: {s}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(self.value(vault, name).await, None);
    }
}

fn vault_of(activate_out: &str) -> String {
    activate_out
        .split("vault ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_string()
}

/// Every file under `dir`, as bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn assert_no_plaintext(dir: &Path, values: &[&str]) {
    let all = files(dir);
    assert!(all.len() >= 2, "{all:?}");
    for (path, bytes) in all {
        let text = String::from_utf8_lossy(&bytes);
        for v in values {
            assert!(!text.contains(v), "{path} holds a secret in the clear");
        }
    }
}

#[tokio::test]
async fn agent_activates_once_pushes_restores_and_keeps_nothing_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let creds = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let agent_dir = dir.path().join("agent1");
    let agent_dir_s = agent_dir.to_str().unwrap();

    let (code, _, err) = run(&["device", "create", "-n", "edge1"], creds);
    assert_eq!(code, 0, "{err}");
    let (code, key, err) = run(&["device", "activation-key", "-n", "edge1"], creds);
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();

    // A mistyped key is refused locally and leaves no state.
    let mut typo = key.clone().into_bytes();
    typo[3] = if typo[3] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let (code, _, err) = run(
        &[
            "agent",
            "activate",
            "--key",
            &typo,
            "--data-dir",
            agent_dir_s,
            "--server-ca",
            &ca,
        ],
        None,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("InvalidActivationKey"), "{err}");
    assert!(!agent_dir.join("state.json").exists());

    // --- activate: the device's secrets land in the vault
    let (code, out, err) = run(
        &[
            "agent",
            "activate",
            "--key",
            &key,
            "--data-dir",
            agent_dir_s,
            "--server-ca",
            &ca,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("activated device edge1"), "{out}");
    let vault = vault_of(&out);
    let pushed = report(&out);
    assert_eq!(pushed.len(), 3, "{out}");
    let cik_name = pushed[0].0.clone();
    assert_eq!(pushed[0].1, "read");
    assert_eq!(
        pushed[1],
        (
            "edge1-disk-recovery-key".to_string(),
            "restored".to_string()
        )
    );
    assert_eq!(
        pushed[2],
        ("edge1-bmc-password".to_string(), "restored".to_string())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(agent_dir.join("device.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // --- the same key a second time: refused by the server (fresh data dir), and an
    // activated data dir refuses to be overwritten.
    let other = dir.path().join("agent2");
    let (code, _, err) = run(
        &[
            "agent",
            "activate",
            "--key",
            &key,
            "--data-dir",
            other.to_str().unwrap(),
            "--server-ca",
            &ca,
        ],
        None,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("ActivationKeyAlreadyUsed"), "{err}");
    let (code, _, err) = run(
        &[
            "agent",
            "activate",
            "--key",
            &key,
            "--data-dir",
            agent_dir_s,
            "--server-ca",
            &ca,
        ],
        None,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("DeviceAlreadyActivated"), "{err}");

    // --- with no agent running, the admin (once granted) reads what the device pushed
    let admin_token = server.admin_token().await;
    let oid = {
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(admin_token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };
    let admin = Admin {
        server: &server,
        http: {
            let pem = std::fs::read(&ca).unwrap();
            reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .resolve(
                    &format!("{vault}.vault.localhost"),
                    format!("127.0.0.1:{}", server.port).parse().unwrap(),
                )
                .build()
                .unwrap()
        },
        token: admin_token,
    };
    assert_eq!(
        admin
            .secret(&vault, "edge1-bmc-password", Method::GET, None)
            .await
            .0,
        403
    );
    let (code, _, err) = run(
        &[
            "policy",
            "set",
            "--vault",
            &vault,
            "--object-id",
            &oid,
            "--secret-permissions",
            "get,set,delete,purge",
        ],
        creds,
    );
    assert_eq!(code, 0, "{err}");
    let recovery = admin
        .value(&vault, "edge1-disk-recovery-key")
        .await
        .unwrap();
    assert_eq!(recovery.split('-').count(), 8, "{recovery}");
    let bmc = admin.value(&vault, "edge1-bmc-password").await.unwrap();
    assert_eq!(bmc.len(), 24);
    let (_, v) = admin
        .secret(&vault, "edge1-bmc-password", Method::GET, None)
        .await;
    assert_eq!(v["tags"]["secretType"], "BMCDefaultUserPassword");
    let cik = admin.value(&vault, &cik_name).await.unwrap();

    // --- a deleted (and purged) secret is restored, a stale one fixed, by sync-secrets
    admin.destroy(&vault, "edge1-bmc-password").await;
    let (s, _) = admin
        .secret(
            &vault,
            "edge1-disk-recovery-key",
            Method::PUT,
            Some(json!({"value": "stale"})),
        )
        .await;
    assert_eq!(s, 200);
    let (code, out, err) = run(&["agent", "sync-secrets", "--data-dir", agent_dir_s], None);
    assert_eq!(code, 0, "{err}");
    let r = report(&out);
    assert_eq!(r[0].1, "in sync", "{out}");
    assert_eq!(r[1].1, "updated", "{out}");
    assert_eq!(r[2].1, "restored", "{out}");
    assert_eq!(
        admin.value(&vault, "edge1-bmc-password").await.as_deref(),
        Some(bmc.as_str())
    );
    assert_eq!(
        admin
            .value(&vault, "edge1-disk-recovery-key")
            .await
            .as_deref(),
        Some(recovery.as_str())
    );
    // A soft-deleted (not purged) secret cannot be overwritten with Set: the sync says what to do.
    let (s, _) = admin
        .secret(&vault, "edge1-bmc-password", Method::DELETE, None)
        .await;
    assert_eq!(s, 200);
    let (code, _, err) = run(&["agent", "sync-secrets", "--data-dir", agent_dir_s], None);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("recover"), "{err}");
    assert!(!err.contains(&bmc));

    // --- nothing in the agent's data dir holds a secret in the clear
    assert_no_plaintext(&agent_dir, &[&bmc, &recovery, &cik, &key]);
}

/// GETs the agent page (status, body), with an optional Host header.
async fn page(port: u16, host: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/"));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post(port: u16, form: &[(&str, &str)], origin: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/activate"))
        .form(form);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn agent_run_activates_from_its_page_and_restores_secrets_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let creds_path = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let (code, _, err) = run(&["device", "create", "-n", "edge3"], creds);
    assert_eq!(code, 0, "{err}");
    let (code, key, err) = run(&["device", "activation-key", "-n", "edge3"], creds);
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();

    let port = free_port();
    let agent_dir = dir.path().join("agent");
    let mut child = Command::new(BIN)
        .args(["agent", "run", "--data-dir"])
        .arg(&agent_dir)
        .args([
            "--server-ca",
            &ca,
            "--port",
            &port.to_string(),
            "--poll-interval",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    child = {
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the agent page did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child
    };
    let _guard = Kill(child);

    let (s, html) = page(port, None).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("Not activated") && html.contains("<form"),
        "{html}"
    );
    assert!(!html.contains("<script") && !html.contains("src="));
    // Every loopback route refuses a name that is not its own (DNS rebinding).
    assert_eq!(page(port, Some("evil.example:80")).await.0, 421);
    // No token, a made-up token, a foreign origin: refused, key not spent.
    assert_eq!(post(port, &[("activationKey", &key)], None).await.0, 400);
    assert_eq!(
        post(port, &[("csrf", "00"), ("activationKey", &key)], None)
            .await
            .0,
        403
    );
    let token = csrf_of(&page(port, None).await.1);
    let (s, _) = post(
        port,
        &[("csrf", &token), ("activationKey", &key)],
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(s, 403);
    // The real form: activated, secrets pushed.
    let token = csrf_of(&page(port, None).await.1);
    let (s, html) = post(port, &[("csrf", &token), ("activationKey", &key)], None).await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("Activated device <b>edge3</b>"), "{html}");
    assert!(html.contains("edge3-bmc-password (restored)"), "{html}");
    // The token was single-use.
    assert_eq!(
        post(port, &[("csrf", &token), ("activationKey", &key)], None)
            .await
            .0,
        403
    );

    // The loop restores a secret deleted and purged behind its back.
    let vault = html
        .split("vault <b>")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let vault = if vault.is_empty() {
        html.split("synced to vault ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    } else {
        vault.split('<').next().unwrap().to_string()
    };
    let admin_token = server.admin_token().await;
    let oid = {
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(admin_token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };
    let (code, _, err) = run(
        &[
            "policy",
            "set",
            "--vault",
            &vault,
            "--object-id",
            &oid,
            "--secret-permissions",
            "get,delete,purge",
        ],
        creds,
    );
    assert_eq!(code, 0, "{err}");
    let pem = std::fs::read(&ca).unwrap();
    let admin = Admin {
        server: &server,
        http: reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .resolve(
                &format!("{vault}.vault.localhost"),
                format!("127.0.0.1:{}", server.port).parse().unwrap(),
            )
            .build()
            .unwrap(),
        token: admin_token,
    };
    let bmc = admin.value(&vault, "edge3-bmc-password").await.unwrap();
    admin.destroy(&vault, "edge3-bmc-password").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = admin.value(&vault, "edge3-bmc-password").await {
            assert_eq!(v, bmc);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent loop did not restore the secret"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, html) = page(port, None).await;
    assert!(html.contains("Activated: device <b>edge3</b>"), "{html}");
    assert_no_plaintext(&agent_dir, &[&bmc, &key]);
}
