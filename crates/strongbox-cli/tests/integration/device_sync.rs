//! `strongbox device sync-secrets` end to end: the admin's request waits for a real
//! `strongbox agent run` process to push and report; without a device answering, the
//! operation fails after its timeout (moved by the server's dev clock, not by sleeping).

use crate::common::*;
use crate::devices::mgmt_token;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn run(
    args: &[&str],
    creds: Option<&Path>,
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args);
    if let Some(p) = creds {
        c.arg("--credentials").arg(p);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin.unwrap_or("").as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn ok(args: &[&str], creds: Option<&Path>) -> String {
    let (code, out, err) = run(args, creds, None);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

async fn arm(
    server: &Server,
    token: Option<&str>,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .client
        .post(format!("https://localhost:{}{path}", server.port));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sync_secrets_waits_for_the_running_agent_and_times_out_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &["--dev-clock"]).await;
    let creds_path = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let agent_dir = dir.path().join("agent");
    let agent_dir_s = agent_dir.to_str().unwrap();
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dev = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices"
    );
    let mgmt = mgmt_token(&server).await;

    ok(&["device", "create", "-n", "edge1"], creds);
    // Not activated yet: refused, nothing pending.
    let (code, _, err) = run(&["device", "sync-secrets", "-n", "edge1"], creds, None);
    assert_ne!(code, 0);
    assert!(err.contains("not activated"), "{err}");
    let key = ok(&["device", "activation-key", "-n", "edge1"], creds);
    ok(
        &[
            "agent",
            "activate",
            "--key",
            key.trim(),
            "--data-dir",
            agent_dir_s,
            "--server-ca",
            &ca,
        ],
        None,
    );

    // Bad input, in the ARM error shape.
    let (s, v) = arm(
        &server,
        Some(&mgmt),
        &format!("{dev}/edge1/syncSecrets?api-version=2023-07-01"),
        Some(json!({"force": true})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
    let (s, _) = arm(
        &server,
        Some(&mgmt),
        &format!("{dev}/nodevice/syncSecrets?api-version=2023-07-01"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // The report endpoint takes only the device's own token.
    let device_id =
        serde_json::from_str::<Value>(&ok(&["device", "show", "-n", "edge1", "-o", "json"], creds))
            .unwrap()["properties"]["deviceId"]
            .as_str()
            .map(String::from);
    let report = json!({"requestId": "x", "secrets": []});
    let id = device_id.clone().unwrap_or_else(|| "unknown".into());
    for token in [None, Some(mgmt.as_str()), Some("not-a-token")] {
        let (s, v) = arm(
            &server,
            token,
            &format!("/devices/{id}/secretsSynced"),
            Some(report.clone()),
        )
        .await;
        assert_eq!(s, 401, "{v}");
    }

    // Make a device secret stale as an admin with Set on the vault.
    let vault =
        serde_json::from_str::<Value>(&ok(&["device", "show", "-n", "edge1", "-o", "json"], creds))
            .unwrap()["properties"]["keyVault"]["name"]
            .as_str()
            .unwrap()
            .to_string();
    let admin_oid = {
        use base64::Engine;
        let t = server.admin_token().await;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };
    ok(
        &[
            "policy",
            "set",
            "--vault",
            &vault,
            "--object-id",
            &admin_oid,
            "--secret-permissions",
            "get,list,set",
        ],
        creds,
    );
    let (code, _, err) = run(
        &[
            "secret",
            "set",
            "--vault",
            &vault,
            "-n",
            "edge1-bmc-password",
        ],
        creds,
        Some("stale-value"),
    );
    assert_eq!(code, 0, "{err}");

    // A real agent loop: it sees the request on its next check-in, pushes, and reports.
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "agent",
            "run",
            "--data-dir",
            agent_dir_s,
            "--server-ca",
            &ca,
        ])
        .args(["--port", &port.to_string(), "--poll-interval", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(child);
    let started = Instant::now();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(
            &["device", "sync-secrets", "-n", "edge1"],
            Some(creds_path.as_path()),
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        out.contains("Device 'edge1' synced its secrets at"),
        "{out}"
    );
    assert!(out.contains("edge1-bmc-password"), "{out}");
    let creds = Some(dir.path().join("server/dev-credentials.json"));
    let shown: Value = serde_json::from_str(&ok(
        &[
            "secret",
            "show",
            "--vault",
            &vault,
            "-n",
            "edge1-bmc-password",
            "-o",
            "json",
        ],
        creds.as_deref(),
    ))
    .unwrap();
    assert_ne!(shown["value"], "stale-value");

    // JSON output names the versions the device reports, and they are the vault's current ones.
    let out = ok(
        &["device", "sync-secrets", "-n", "edge1", "-o", "json"],
        creds.as_deref(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let bmc = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "edge1-bmc-password")
        .unwrap()
        .clone();
    assert_eq!(bmc["outcome"], "in sync", "{v}");
    assert_eq!(
        shown["id"].as_str().unwrap().rsplit('/').next().unwrap(),
        bmc["version"].as_str().unwrap()
    );

    drop(_guard);
    // No agent running (and the clock moved past the device's own, so it could not sign in
    // anyway): the request times out by the server's clock, with a clear message.
    let mut waiting = Command::new(BIN)
        .args(["device", "sync-secrets", "-n", "edge1", "--credentials"])
        .arg(dir.path().join("server/dev-credentials.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s, _) = arm(&server, None, "/_dev/clock?advance_secs=601", None).await;
    assert_eq!(s, 200);
    let out = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if waiting.try_wait().unwrap().is_some() {
                break waiting.wait_with_output().unwrap();
            }
            assert!(Instant::now() < deadline, "sync-secrets did not give up");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("DeviceDidNotRespond") && err.contains("strongbox agent run"),
        "{err}"
    );
}

/// The admin's view of a secret (value, contentType).
pub(crate) fn admin_secret(vault: &str, name: &str, creds: Option<&Path>) -> (String, String) {
    let v: Value = serde_json::from_str(&ok(
        &["secret", "show", "--vault", vault, "-n", name, "-o", "json"],
        creds,
    ))
    .unwrap();
    (
        v["value"].as_str().unwrap().to_string(),
        v["contentType"].as_str().unwrap_or_default().to_string(),
    )
}

pub(crate) fn admin_set(vault: &str, name: &str, value: &str, creds: Option<&Path>) {
    let (code, _, err) = run(
        &[
            "secret",
            "set",
            "--vault",
            vault,
            "-n",
            name,
            "--content-type",
            "application/vnd.strongbox.cik-envelope",
        ],
        creds,
        Some(value),
    );
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn cik_channel_round_trips_and_refuses_tampering_and_other_devices() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let creds_path = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let admin_oid = {
        use base64::Engine;
        let t = server.admin_token().await;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };
    let mut vaults = Vec::new();
    for d in ["edge1", "edge2"] {
        ok(&["device", "create", "-n", d], creds);
        let key = ok(&["device", "activation-key", "-n", d], creds);
        let data = dir.path().join(d);
        ok(
            &[
                "agent",
                "activate",
                "--key",
                key.trim(),
                "--data-dir",
                data.to_str().unwrap(),
                "--server-ca",
                &ca,
            ],
            None,
        );
        let v =
            serde_json::from_str::<Value>(&ok(&["device", "show", "-n", d, "-o", "json"], creds))
                .unwrap()["properties"]["keyVault"]["name"]
                .as_str()
                .unwrap()
                .to_string();
        ok(
            &[
                "policy",
                "set",
                "--vault",
                &v,
                "--object-id",
                &admin_oid,
                "--secret-permissions",
                "get,list,set",
            ],
            creds,
        );
        vaults.push(v);
    }
    let plaintext = "smb://share user=ops password=Corr3ct-H0rse!";
    let input = dir.path().join("share.txt");
    std::fs::write(&input, plaintext).unwrap();
    let out = ok(
        &[
            "device",
            "send-secret",
            "-n",
            "edge1",
            "--secret-name",
            "share-cred",
            "--file",
            input.to_str().unwrap(),
        ],
        creds,
    );
    assert!(out.contains("sealed under its CIK"), "{out}");
    // The vault holds ciphertext only.
    let (stored, ct) = admin_secret(&vaults[0], "share-cred", creds);
    assert_eq!(ct, "application/vnd.strongbox.cik-envelope");
    assert!(stored.starts_with("sbcik2."), "{stored}");
    assert!(!stored.contains("Corr3ct") && !stored.contains("smb://"));

    // The device opens it into a 0600 file.
    let a1 = dir.path().join("edge1");
    let got = dir.path().join("got.txt");
    ok(
        &[
            "agent",
            "receive",
            "--data-dir",
            a1.to_str().unwrap(),
            "--secret-name",
            "share-cred",
            "--out",
            got.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(std::fs::read_to_string(&got).unwrap(), plaintext);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&got).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A newer envelope under the same name opens; the older one put back is a replay.
    let receive = |out: &Path| {
        run(
            &[
                "agent",
                "receive",
                "--data-dir",
                a1.to_str().unwrap(),
                "--secret-name",
                "share-cred",
                "--out",
                out.to_str().unwrap(),
            ],
            None,
            None,
        )
    };
    let rotated = "smb://share user=ops password=N3w-R0tated!";
    std::fs::write(&input, rotated).unwrap();
    ok(
        &[
            "device",
            "send-secret",
            "-n",
            "edge1",
            "--secret-name",
            "share-cred",
            "--file",
            input.to_str().unwrap(),
        ],
        creds,
    );
    let (newer, _) = admin_secret(&vaults[0], "share-cred", creds);
    let seq = |e: &str| e.split('.').nth(2).unwrap().parse::<u64>().unwrap();
    assert!(seq(&newer) > seq(&stored), "{newer} vs {stored}");
    let (code, _, err) = receive(&got);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&got).unwrap(), rotated);
    admin_set(&vaults[0], "share-cred", &stored, creds);
    let replayed = dir.path().join("replayed.txt");
    let (code, _, err) = receive(&replayed);
    assert_ne!(code, 0);
    assert!(
        err.contains("older than one this device already opened") && err.contains("replay"),
        "{err}"
    );
    assert!(!replayed.exists(), "nothing is written for a replay");
    assert_eq!(std::fs::read_to_string(&got).unwrap(), rotated);
    assert!(!err.contains("Corr3ct"));
    // Relabelling the old envelope with a newer sequence does not get it past: the sequence is
    // authenticated.
    let relabelled = stored.replacen(
        &format!(".{}.", seq(&stored)),
        &format!(".{}.", seq(&newer) + 1),
        1,
    );
    assert_ne!(relabelled, stored);
    admin_set(&vaults[0], "share-cred", &relabelled, creds);
    let (code, _, err) = receive(&replayed);
    assert_ne!(code, 0);
    assert!(err.contains("did not open"), "{err}");
    assert!(!replayed.exists());
    // The newest envelope put back again is still accepted (reading it twice is no replay).
    admin_set(&vaults[0], "share-cred", &newer, creds);
    let (code, _, err) = receive(&replayed);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&replayed).unwrap(), rotated);

    // One flipped character in the stored envelope: refused, nothing written.
    let mut bytes = stored.clone().into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    admin_set(
        &vaults[0],
        "share-cred",
        std::str::from_utf8(&bytes).unwrap(),
        creds,
    );
    let bad = dir.path().join("bad.txt");
    let (code, _, err) = run(
        &[
            "agent",
            "receive",
            "--data-dir",
            a1.to_str().unwrap(),
            "--secret-name",
            "share-cred",
            "--out",
            bad.to_str().unwrap(),
        ],
        None,
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("did not open"), "{err}");
    assert!(!bad.exists());

    // Another device (its own CIK) cannot open edge1's envelope copied into its vault.
    admin_set(&vaults[1], "share-cred", &stored, creds);
    let a2 = dir.path().join("edge2");
    let (code, _, err) = run(
        &[
            "agent",
            "receive",
            "--data-dir",
            a2.to_str().unwrap(),
            "--secret-name",
            "share-cred",
            "--out",
            bad.to_str().unwrap(),
        ],
        None,
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("did not open"), "{err}");
    assert!(!bad.exists());
    assert!(!err.contains("Corr3ct"));

    // The device's own secret names are not for customer secrets.
    let (code, _, err) = run(
        &[
            "device",
            "send-secret",
            "-n",
            "edge1",
            "--secret-name",
            "edge1-bmc-password",
        ],
        creds,
        Some("x"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("device's own secrets"), "{err}");
}
