//! Alerts and Recover key vault / Recover access, end to end: the real server, a real agent
//! process (its own data dir), and the CLI as an admin would use it. Alerts are computed from
//! the vault's real state, so each one must appear when its condition does and clear when it
//! is gone; every refused recovery must leave the device and the vaults as they were.

use crate::common::*;
use serde_json::Value;
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

/// (alertType, severity, recommendation) of each alert the device raises now.
fn alerts(creds: Option<&Path>) -> Vec<(String, String, String)> {
    let out = ok(&["alert", "list", "--device", "edge1", "-o", "json"], creds);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let p = &a["properties"];
            (
                p["alertType"].as_str().unwrap().to_string(),
                p["severity"].as_str().unwrap().to_string(),
                p["recommendation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn device(creds: Option<&Path>) -> Value {
    serde_json::from_str(&ok(&["device", "show", "-n", "edge1", "-o", "json"], creds)).unwrap()
}

fn vault_of(creds: Option<&Path>) -> String {
    device(creds)["properties"]["keyVault"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The admin's view of a secret's value (None when absent).
fn secret(vault: &str, name: &str, creds: Option<&Path>) -> Option<String> {
    let (code, out, _) = run(
        &["secret", "show", "--vault", vault, "-n", name, "-o", "json"],
        creds,
    );
    (code == 0).then(|| {
        serde_json::from_str::<Value>(&out).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

fn policies(vault: &str, creds: Option<&Path>) -> Value {
    let v: Value =
        serde_json::from_str(&ok(&["vault", "show", "-n", vault, "-o", "json"], creds)).unwrap();
    v["properties"]["accessPolicies"].clone()
}

fn locks(vault: &str, creds: Option<&Path>) -> usize {
    let v: Value = serde_json::from_str(&ok(
        &["lock", "list", "--vault", vault, "-o", "json"],
        creds,
    ))
    .unwrap();
    v.as_array().unwrap().len()
}

fn sync(agent_dir: &str) -> (i32, String, String) {
    run(&["agent", "sync-secrets", "--data-dir", agent_dir], None)
}

#[tokio::test]
async fn alerts_follow_the_vault_and_recovery_brings_the_device_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let creds_path = dir.path().join("server/dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
    let agent_dir = dir.path().join("agent");
    let agent_dir = agent_dir.to_str().unwrap();
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

    // --- unknown device: refused, and there is nothing to alert on
    let (code, _, err) = run(&["device", "recover-vault", "--name", "nodevice"], creds);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = run(&["alert", "list", "--device", "nodevice"], creds);
    assert_eq!(code, 4, "{err}");

    ok(&["device", "create", "-n", "edge1"], creds);
    let key = ok(&["device", "activation-key", "-n", "edge1"], creds);
    ok(
        &[
            "agent",
            "activate",
            "--key",
            key.trim(),
            "--data-dir",
            agent_dir,
            "--server-ca",
            &ca,
        ],
        None,
    );
    let vault = vault_of(creds);
    let identity = device(creds)["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
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
    let recovery = secret(&vault, "edge1-disk-recovery-key", creds).unwrap();
    let bmc = secret(&vault, "edge1-bmc-password", creds).unwrap();
    let cik_name = device(creds)["properties"]["keyVault"]["channelIntegrityKeyName"]
        .as_str()
        .unwrap()
        .to_string();
    let cik = secret(&vault, &cik_name, creds).unwrap();
    assert_eq!(alerts(creds), vec![], "a healthy device raises nothing");

    // --- recover on a healthy device is refused and changes nothing
    let before = (policies(&vault, creds), locks(&vault, creds));
    let (code, _, err) = run(&["device", "recover-vault", "--name", "edge1"], creds);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("NothingToRecover"), "{err}");
    let (code, _, err) = run(
        &[
            "device",
            "recover-vault",
            "--name",
            "edge1",
            "--new-vault-name",
            "edge1-other",
        ],
        creds,
    );
    assert_eq!(code, 6, "{err}");
    assert_eq!(before, (policies(&vault, creds), locks(&vault, creds)));
    assert_eq!(vault_of(creds), vault);

    // --- the vault is deleted (its lock lifted first, as an admin must): critical alert
    ok(
        &[
            "lock",
            "delete",
            "-n",
            "strongbox-device-vault",
            "--vault",
            &vault,
        ],
        creds,
    );
    ok(&["vault", "delete", "-n", &vault], creds);
    let a = alerts(creds);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("KeyVaultDeleted", "Critical")
    );
    assert!(
        a[0].2
            .contains("strongbox device recover-vault --name edge1"),
        "{a:?}"
    );
    // The device cannot push, and says why.
    let (code, _, err) = sync(agent_dir);
    assert_ne!(code, 0);
    assert!(err.contains("recover-vault"), "{err}");
    // While recoverable, a new name is refused and nothing moves.
    let (code, _, err) = run(
        &[
            "device",
            "recover-vault",
            "--name",
            "edge1",
            "--new-vault-name",
            "edge1-new",
        ],
        creds,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("KeyVaultRecoverable"), "{err}");
    let (code, _, _) = run(&["vault", "show", "-n", "edge1-new"], creds);
    assert_eq!(code, 4);

    // --- recover: same name, lock back, identity's Get+Set, alert cleared
    let out = ok(&["device", "recover-vault", "--name", "edge1"], creds);
    assert!(out.contains(&vault), "{out}");
    assert_eq!(alerts(creds), vec![]);
    assert_eq!(locks(&vault, creds), 1);
    let d = device(creds);
    assert_eq!(d["properties"]["keyVault"]["locked"], true);
    assert_eq!(
        d["properties"]["keyVault"]["diagnosticSetting"],
        "strongbox-device-audit"
    );
    assert_eq!(
        secret(&vault, &cik_name, creds).as_deref(),
        Some(cik.as_str())
    );
    let (code, out, err) = sync(agent_dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&vault), "{out}");
    assert_eq!(
        secret(&vault, "edge1-bmc-password", creds).as_deref(),
        Some(bmc.as_str())
    );

    // --- the identity's access policy removed: alert naming recover-access; then restored
    ok(
        &[
            "policy",
            "delete",
            "--vault",
            &vault,
            "--object-id",
            &identity,
        ],
        creds,
    );
    let a = alerts(creds);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("KeyVaultAccessLost", "Critical")
    );
    assert!(
        a[0].2
            .contains("strongbox device recover-access --name edge1"),
        "{a:?}"
    );
    let (code, _, _) = sync(agent_dir);
    assert_ne!(code, 0, "the device cannot push without its grant");
    // Reduced below Get+Set counts too.
    ok(
        &[
            "policy",
            "set",
            "--vault",
            &vault,
            "--object-id",
            &identity,
            "--secret-permissions",
            "get",
        ],
        creds,
    );
    assert_eq!(alerts(creds)[0].0, "KeyVaultAccessLost");
    ok(&["device", "recover-access", "--name", "edge1"], creds);
    assert_eq!(alerts(creds), vec![]);
    let p = policies(&vault, creds);
    let mine: Vec<&Value> = p
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["objectId"] == identity.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{p}");
    let mut perms: Vec<String> = mine[0]["permissions"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_ascii_lowercase())
        .collect();
    perms.sort();
    assert_eq!(perms, ["get", "set"]);
    assert!(
        p.as_array()
            .unwrap()
            .iter()
            .any(|e| e["objectId"] == admin_oid.as_str()),
        "other policy entries are untouched: {p}"
    );

    // --- stale secrets: a device secret missing from the vault raises a warning
    ok(
        &[
            "policy",
            "set",
            "--vault",
            &vault,
            "--object-id",
            &admin_oid,
            "--secret-permissions",
            "get,list,set,delete,purge",
        ],
        creds,
    );
    ok(
        &[
            "secret",
            "delete",
            "--vault",
            &vault,
            "-n",
            "edge1-disk-recovery-key",
        ],
        creds,
    );
    let a = alerts(creds);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("DeviceSecretsStale", "Warning")
    );
    assert!(a[0].2.contains("strongbox agent sync-secrets"), "{a:?}");

    // --- delete the vault and purge it: recovery needs a new name, taken names are refused
    ok(
        &[
            "lock",
            "delete",
            "-n",
            "strongbox-device-vault",
            "--vault",
            &vault,
        ],
        creds,
    );
    ok(&["vault", "delete", "-n", &vault], creds);
    ok(&["vault", "purge", "-n", &vault], creds);
    let a = alerts(creds);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].0, "KeyVaultDeleted");
    assert!(a[0].2.contains("--new-vault-name"), "{a:?}");
    let (code, _, err) = run(&["device", "recover-vault", "--name", "edge1"], creds);
    assert_ne!(code, 0);
    assert!(err.contains("NewVaultNameRequired"), "{err}");
    // A name in use, and a name held by a soft-deleted vault, are refused; nothing moves.
    let (code, _, err) = run(
        &[
            "device",
            "recover-vault",
            "--name",
            "edge1",
            "--new-vault-name",
            "dev",
        ],
        creds,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("VaultAlreadyExists"), "{err}");
    ok(&["vault", "create", "-n", "held-name"], creds);
    ok(&["vault", "delete", "-n", "held-name"], creds);
    let (code, _, err) = run(
        &[
            "device",
            "recover-vault",
            "--name",
            "edge1",
            "--new-vault-name",
            "held-name",
        ],
        creds,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("VaultAlreadyExistsInDeletedState"), "{err}");
    assert_eq!(
        vault_of(creds),
        vault,
        "the device's vault reference is unchanged"
    );
    assert_eq!(alerts(creds)[0].0, "KeyVaultDeleted");

    let out = ok(
        &[
            "device",
            "recover-vault",
            "--name",
            "edge1",
            "--new-vault-name",
            "edge1-kv2",
        ],
        creds,
    );
    assert!(out.contains("edge1-kv2"), "{out}");
    assert_eq!(vault_of(creds), "edge1-kv2");
    assert_eq!(locks("edge1-kv2", creds), 1);
    // The server holds no copy of the device secrets: the new vault lacks them until the device pushes.
    let a = alerts(creds);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].0, "DeviceSecretsStale");
    let (code, out, err) = sync(agent_dir);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("edge1-kv2"),
        "the agent pushed to the new vault: {out}"
    );
    assert_eq!(alerts(creds), vec![]);
    ok(
        &[
            "policy",
            "set",
            "--vault",
            "edge1-kv2",
            "--object-id",
            &admin_oid,
            "--secret-permissions",
            "get",
        ],
        creds,
    );
    assert_eq!(
        secret("edge1-kv2", &cik_name, creds).as_deref(),
        Some(cik.as_str())
    );
    assert_eq!(
        secret("edge1-kv2", "edge1-disk-recovery-key", creds).as_deref(),
        Some(recovery.as_str())
    );
    assert_eq!(
        secret("edge1-kv2", "edge1-bmc-password", creds).as_deref(),
        Some(bmc.as_str())
    );
}

/// Sends a raw body; (status, JSON answer).
async fn raw(
    server: &Server,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = server
        .client
        .request(method, format!("https://localhost:{}{path}", server.port))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn recovery_and_alert_endpoints_refuse_bad_input_in_the_arm_shape() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let creds_path = dir.path().join("dev-credentials.json");
    let creds = Some(creds_path.as_path());
    let token = crate::devices::mgmt_token(&server).await;
    let sub = server.creds["subscription_id"].as_str().unwrap();
    let dev = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/edge1"
    );
    let api = "api-version=2023-07-01";
    ok(&["device", "create", "-n", "edge1"], creds);

    // Before any vault: nothing to alert on, and recovery points at activation-key instead.
    let (s, v) = raw(
        &server,
        Some(&token),
        Method::GET,
        &format!("{dev}/alerts?{api}"),
        None,
    )
    .await;
    assert_eq!((s, v["value"].as_array().unwrap().len()), (200, 0), "{v}");
    let recover = format!("{dev}/recoverKeyVault?{api}");
    let (s, v) = raw(&server, Some(&token), Method::POST, &recover, Some("{}")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("KeyVaultNotConfigured")),
        "{v}"
    );

    let big = format!("{{\"vaultName\":\"{}\"}}", "a".repeat(200_000));
    for body in [
        "{",
        "[]",
        r#"{"vaultName": 7}"#,
        r#"{"vaultName": "ok-name", "extra": 1}"#,
        r#"{"vaultName": "bad_name!"}"#,
        r#"{"vaultName": "ab"}"#,
        big.as_str(),
    ] {
        let (s, v) = raw(&server, Some(&token), Method::POST, &recover, Some(body)).await;
        assert!((400..500).contains(&s), "{body:.40}: {s} {v}");
        assert!(v["error"]["code"].is_string(), "{body:.40}: {v}");
    }
    // Without a token, wrong method, bad names.
    let (s, _) = raw(
        &server,
        None,
        Method::GET,
        &format!("{dev}/alerts?{api}"),
        None,
    )
    .await;
    assert_eq!(s, 401);
    let (s, v) = raw(
        &server,
        Some(&token),
        Method::DELETE,
        &format!("{dev}/alerts?{api}"),
        None,
    )
    .await;
    assert_eq!(s, 405, "{v}");
    let bad = dev.replace("/edge1", "/-bad-");
    let (s, v) = raw(
        &server,
        Some(&token),
        Method::GET,
        &format!("{bad}/alerts?{api}"),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // The device's own view of its vault takes only that device's own token.
    let id = {
        let (_, v) = raw(
            &server,
            Some(&token),
            Method::GET,
            &format!("{dev}?{api}"),
            None,
        )
        .await;
        v["properties"]["deviceId"].as_str().unwrap().to_string()
    };
    let path = format!("/devices/{id}/keyVault");
    let (s, v) = raw(&server, None, Method::GET, &path, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken")),
        "{v}"
    );
    let admin = server.admin_token().await;
    let (s, _) = raw(&server, Some(&admin), Method::GET, &path, None).await;
    assert_eq!(s, 401, "another principal's token is refused");
    let (s, _) = raw(
        &server,
        Some(&admin),
        Method::GET,
        "/devices/nosuch/keyVault",
        None,
    )
    .await;
    assert_eq!(s, 401, "an unknown device answers like a foreign one");
    let (s, _) = raw(&server, Some("not-a-token"), Method::GET, &path, None).await;
    assert_eq!(s, 401);
}
