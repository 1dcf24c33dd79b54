//! Device alerts beyond the vault's existence, end to end with the real server and real agent
//! processes: a device secret changed in the vault behind the device's back (compared with the
//! versions the agent reports after every sync), a device that stops reporting (the server's
//! clock moved, not slept), the device identity disabled or deleted and brought back by
//! Recover, and the alert history (first seen kept across reads, episodes counted).

use crate::common::*;
use crate::devices::mgmt_token;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

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

fn ok(args: &[&str], creds: Option<&Path>) -> String {
    let (code, out, err) = run(args, creds);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// The alerts edge1 raises now (their `properties`).
fn alerts(creds: Option<&Path>) -> Vec<Value> {
    let out = ok(&["alert", "list", "--device", "edge1", "-o", "json"], creds);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["properties"].clone())
        .collect()
}

fn kinds(a: &[Value]) -> Vec<(&str, &str)> {
    a.iter()
        .map(|p| {
            (
                p["alertType"].as_str().unwrap(),
                p["severity"].as_str().unwrap(),
            )
        })
        .collect()
}

fn device(creds: Option<&Path>) -> Value {
    serde_json::from_str(&ok(&["device", "show", "-n", "edge1", "-o", "json"], creds)).unwrap()
}

fn activate(creds: Option<&Path>, ca: &str, agent_dir: &Path) -> String {
    let key = ok(&["device", "activation-key", "-n", "edge1"], creds);
    ok(
        &[
            "agent",
            "activate",
            "--key",
            key.trim(),
            "--data-dir",
            agent_dir.to_str().unwrap(),
            "--server-ca",
            ca,
        ],
        None,
    )
}

fn sync(agent_dir: &Path) -> (i32, String, String) {
    run(
        &[
            "agent",
            "sync-secrets",
            "--data-dir",
            agent_dir.to_str().unwrap(),
        ],
        None,
    )
}

fn oid_of_admin(token: &str) -> String {
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["oid"].as_str().unwrap().to_string()
}

async fn advance(server: &Server, secs: i64) {
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/_dev/clock?advance_secs={secs}",
            server.port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn secrets_changed_behind_the_device_or_unreported_raise_a_warning_that_sync_clears() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &["--dev-clock"]).await;
    let creds_path = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let agent = dir.path().join("agent");
    ok(&["device", "create", "-n", "edge1"], creds);
    activate(creds, &ca, &agent);
    let vault = device(creds)["properties"]["keyVault"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let cik_name = device(creds)["properties"]["keyVault"]["channelIntegrityKeyName"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_oid = oid_of_admin(&server.admin_token().await);
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
    assert_eq!(
        alerts(creds),
        Vec::<Value>::new(),
        "a synced device is healthy"
    );

    // --- someone writes another BMC password into the vault: the device's report no longer
    // matches the vault's version.
    let (code, _, err) = {
        let mut c = Command::new(BIN);
        c.args([
            "secret",
            "set",
            "--vault",
            &vault,
            "-n",
            "edge1-bmc-password",
            "--credentials",
        ])
        .arg(&creds_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"written-behind-the-device")
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");
    let a = alerts(creds);
    assert_eq!(kinds(&a), [("DeviceSecretsStale", "Warning")], "{a:?}");
    let message = a[0]["errorDetails"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("edge1-bmc-password") && message.contains("the device last reported"),
        "{message}"
    );
    assert!(!message.contains("written-behind"), "no value in an alert");
    assert!(
        a[0]["recommendation"]
            .as_str()
            .unwrap()
            .contains("strongbox agent sync-secrets"),
        "{a:?}"
    );
    assert_eq!(a[0]["errorDetails"]["occurrences"], 1);
    let first_seen = a[0]["firstSeenDateTime"].as_str().unwrap().to_string();
    let appeared = a[0]["appearedAtDateTime"].as_str().unwrap().to_string();
    assert_eq!(first_seen, appeared);
    // Read again a minute later: the same episode, its start kept.
    advance(&server, 60).await;
    let a = alerts(creds);
    assert_eq!(a[0]["appearedAtDateTime"], appeared.as_str());
    assert_eq!(a[0]["firstSeenDateTime"], first_seen.as_str());
    assert_eq!(a[0]["errorDetails"]["occurrences"], 1);

    // --- the agent syncs (nobody asked it to): it writes its value back, reports, the warning
    // clears.
    let (code, out, err) = sync(&agent);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("edge1-bmc-password (updated)"), "{out}");
    assert_eq!(alerts(creds), Vec::<Value>::new());

    // --- an old value put back (the CIK written again as it was): same value, new version.
    // The version is what counts; the device's next sync finds the value in sync, reports the
    // new version, and the warning clears. It is the same alert's second episode.
    advance(&server, 60).await;
    let out = ok(
        &[
            "secret", "show", "--vault", &vault, "-n", &cik_name, "-o", "json",
        ],
        creds,
    );
    let cik: Value = serde_json::from_str(&out).unwrap();
    let mut c = Command::new(BIN);
    c.args([
        "secret",
        "set",
        "--vault",
        &vault,
        "-n",
        &cik_name,
        "--credentials",
    ])
    .arg(&creds_path)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(cik["value"].as_str().unwrap().as_bytes())
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let a = alerts(creds);
    assert_eq!(kinds(&a), [("DeviceSecretsStale", "Warning")], "{a:?}");
    assert_eq!(
        a[0]["title"],
        "Device secrets in the Key Vault differ from the device's"
    );
    assert!(
        a[0]["errorDetails"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains(&cik_name),
        "{a:?}"
    );
    assert_eq!(a[0]["errorDetails"]["occurrences"], 2, "{a:?}");
    assert_eq!(a[0]["firstSeenDateTime"], first_seen.as_str());
    assert_ne!(a[0]["appearedAtDateTime"], appeared.as_str());
    let (code, out, err) = sync(&agent);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{cik_name} (in sync)")), "{out}");
    assert_eq!(alerts(creds), Vec::<Value>::new());

    // --- the device stops reporting: a day later (server clock) the warning says so and
    // names the agent as the thing to check.
    advance(&server, 23 * 3600).await;
    assert_eq!(
        alerts(creds),
        Vec::<Value>::new(),
        "23 hours is not overdue"
    );
    advance(&server, 3600 + 60).await;
    let a = alerts(creds);
    assert_eq!(kinds(&a), [("DeviceSecretsStale", "Warning")], "{a:?}");
    assert_eq!(a[0]["title"], "The device has not reported its secrets");
    assert!(
        a[0]["recommendation"]
            .as_str()
            .unwrap()
            .contains("strongbox agent run"),
        "{a:?}"
    );
    assert_eq!(a[0]["errorDetails"]["occurrences"], 3);
}

#[tokio::test]
async fn identity_disabled_or_deleted_raises_critical_alerts_and_recovery_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let creds_path = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dev = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/edge1"
    );
    ok(&["device", "create", "-n", "edge1"], creds);
    let first = dir.path().join("agent1");
    activate(creds, &ca, &first);
    let oid = device(creds)["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let vault = device(creds)["properties"]["keyVault"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(alerts(creds), Vec::<Value>::new());

    // --- disabled (identity type None on the device, ARM's switch): critical, names the fix;
    // the device can no longer sign in, and the access alert it would cause is not repeated.
    let token = mgmt_token(&server).await;
    let resp = server
        .client
        .put(format!(
            "https://localhost:{}{dev}?api-version=2023-07-01",
            server.port
        ))
        .bearer_auth(&token)
        .json(&json!({"location": "local", "identity": {"type": "None"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shown: Value = resp.json().await.unwrap();
    assert_eq!(shown["properties"]["identityStatus"], "Disabled", "{shown}");
    let a = alerts(creds);
    assert_eq!(kinds(&a), [("DeviceIdentityDisabled", "Critical")], "{a:?}");
    let rec = a[0]["recommendation"].as_str().unwrap();
    assert!(
        rec.contains("strongbox device recover-vault --name edge1")
            && rec.contains("strongbox device activation-key --name edge1"),
        "{rec}"
    );
    let (code, _, err) = sync(&first);
    assert_ne!(code, 0, "a disabled identity gets no token: {err}");
    // A new device is never created without its identity.
    let resp = server
        .client
        .put(format!(
            "https://localhost:{}{}2?api-version=2023-07-01",
            server.port, dev
        ))
        .bearer_auth(&token)
        .json(&json!({"location": "local", "identity": {"type": "None"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // --- recover enables it again (same identity, same grant); the device must activate anew.
    let out = ok(&["device", "recover-vault", "--name", "edge1"], creds);
    assert!(out.contains("identity was restored"), "{out}");
    let d = device(creds);
    assert_eq!(d["properties"]["identityStatus"], "Enabled");
    assert_eq!(d["identity"]["principalId"], oid.as_str());
    let a = alerts(creds);
    assert_eq!(kinds(&a), [("DeviceNotActivated", "Critical")], "{a:?}");
    let second = dir.path().join("agent2");
    activate(creds, &ca, &second);
    assert_eq!(alerts(creds), Vec::<Value>::new());

    // --- deleted out of band (someone removed the principal): critical; the device view says
    // so; recover makes a new identity, moves the vault grant to it, drops the old entry.
    let store = strongbox_store_sqlite::SqliteStore::open(&format!(
        "sqlite:{}/strongbox.db",
        dir.path().join("server").display()
    ))
    .await
    .unwrap();
    use strongbox_store::IdentityStore;
    store.delete_managed_identity(&oid).await.unwrap();
    let a = alerts(creds);
    assert_eq!(kinds(&a), [("DeviceIdentityDeleted", "Critical")], "{a:?}");
    assert!(
        a[0]["recommendation"]
            .as_str()
            .unwrap()
            .contains("strongbox device recover-vault --name edge1"),
        "{a:?}"
    );
    assert_eq!(device(creds)["properties"]["identityStatus"], "Deleted");
    let (code, _, _) = sync(&second);
    assert_ne!(code, 0, "a deleted identity gets no token");
    let out = ok(&["device", "recover-vault", "--name", "edge1"], creds);
    assert!(out.contains("identity was restored"), "{out}");
    let d = device(creds);
    let new_oid = d["identity"]["principalId"].as_str().unwrap().to_string();
    assert_ne!(new_oid, oid);
    assert_eq!(d["properties"]["identityStatus"], "Enabled");
    let v: Value =
        serde_json::from_str(&ok(&["vault", "show", "-n", &vault, "-o", "json"], creds)).unwrap();
    let entries = v["properties"]["accessPolicies"].as_array().unwrap();
    assert!(
        !entries.iter().any(|e| e["objectId"] == oid.as_str()),
        "the deleted identity's entry is gone: {v}"
    );
    let mine = entries
        .iter()
        .find(|e| e["objectId"] == new_oid.as_str())
        .unwrap();
    assert_eq!(mine["permissions"]["secrets"], json!(["get", "set"]));
    assert_eq!(kinds(&alerts(creds)), [("DeviceNotActivated", "Critical")]);
    let third = dir.path().join("agent3");
    activate(creds, &ca, &third);
    assert_eq!(alerts(creds), Vec::<Value>::new());
    let (code, out, err) = sync(&third);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&vault), "{out}");
}
