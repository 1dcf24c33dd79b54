//! The device endpoints under bad input and the wrong callers, on the real binary: `sendSecret`
//! (the CIK channel, a management call) and `secretsSynced` (the device's own report). Each
//! refusal must come back in the ARM error shape, quote no input, and change nothing (the
//! envelope's version, the device's last report). Then who may read a sync operation's status
//! (device read suffices; a key generation's status needs the key permission), and what the
//! audit chains hold afterwards: every call, allowed or refused, under its caller's oid, and
//! never a secret value.

use crate::cli_support::oid_of;
use crate::common::*;
use crate::devices::{activate, assertion_token, device_key, mgmt_token};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use strongbox_store::{DeviceHealthStore, Store};

const API: &str = "api-version=2023-07-01";

/// A refused call: (what, bearer token, path, body, expected status, expected error code).
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    String,
    Option<Vec<u8>>,
    u16,
    &'a str,
);
/// A value no error, audit record or alert may ever contain.
const SENTINEL: &str = "Sentinel-Value-0xC0FFEE";

async fn send(
    server: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value, String) {
    let mut req = server
        .client
        .request(method, format!("https://localhost:{}{path}", server.port));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// A management-plane token for a principal.
async fn mgmt_token_for(server: &Server, client_id: &str, secret: &str) -> String {
    let tenant = server.creds["tenant_id"].as_str().unwrap();
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/{tenant}/oauth2/v2.0/token",
            server.port
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cli_ok(args: &[&str], creds: &std::path::Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--credentials")
        .arg(creds)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An activated device without an agent: (activation answer, its vault token).
async fn raw_device(server: &Server, creds: &std::path::Path, name: &str) -> (Value, String) {
    cli_ok(&["device", "create", "-n", name], creds);
    let key = cli_ok(&["device", "activation-key", "-n", name], creds);
    let (pkcs8, jwk) = device_key();
    let (s, act) = activate(server, key.trim(), &jwk).await;
    assert_eq!(s, 200, "{act}");
    let (s, tok) = assertion_token(server, &act, &pkcs8).await;
    assert_eq!(s, 200, "{tok}");
    (act, tok["access_token"].as_str().unwrap().to_string())
}

/// The device's view of one of its vault's secrets: (status, version).
async fn vault_version(server: &Server, act: &Value, token: &str, name: &str) -> (u16, String) {
    let vault = act["vaultName"].as_str().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let ca = std::fs::read(server.creds["ca_cert"].as_str().unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve(&format!("{vault}.vault.localhost"), addr)
        .build()
        .unwrap();
    let url = format!(
        "{}secrets/{name}?api-version=7.6",
        act["vaultUri"].as_str().unwrap()
    );
    let resp = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let version = v["id"]
        .as_str()
        .and_then(|id| id.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    (status, version)
}

fn assert_arm_error(what: &str, status: u16, body: &Value, text: &str, want: u16, code: &str) {
    assert_eq!(status, want, "{what}: {text}");
    assert_eq!(body["error"]["code"], code, "{what}: {text}");
    assert!(body["error"]["message"].is_string(), "{what}: {text}");
    assert!(!text.contains(SENTINEL), "{what} quotes its input: {text}");
}

#[tokio::test]
async fn device_endpoints_refuse_bad_input_change_nothing_and_audit_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let creds = dir.path().join("dev-credentials.json");
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let devices = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices"
    );
    let admin = mgmt_token(&server).await;
    let admin_oid = oid_of(&admin);
    let (act1, tok1) = raw_device(&server, &creds, "edge1").await;
    let (act2, tok2) = raw_device(&server, &creds, "edge2").await;
    let id1 = act1["deviceId"].as_str().unwrap().to_string();
    let cik = act1["channelIntegrityKeyName"]
        .as_str()
        .unwrap()
        .to_string();
    let d = dir.path().to_str().unwrap();
    let new_sp = |name: &str| {
        let (code, out, err) = cli(&["sp", "create", "--data-dir", d, "--name", name]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let reader = new_sp("device-reader");
    let reader_oid = reader["object_id"].as_str().unwrap().to_string();
    cli_ok(
        &[
            "role",
            "assign",
            "--role",
            "Reader",
            "--assignee",
            &reader_oid,
            "-g",
            "strongbox-dev",
        ],
        &creds,
    );
    let reader_tok = mgmt_token_for(
        &server,
        reader["client_id"].as_str().unwrap(),
        reader["client_secret"].as_str().unwrap(),
    )
    .await;
    let nobody = new_sp("nobody");
    let nobody_tok = mgmt_token_for(
        &server,
        nobody["client_id"].as_str().unwrap(),
        nobody["client_secret"].as_str().unwrap(),
    )
    .await;

    // ---------------- sendSecret
    let send_path = format!("{devices}/edge1/sendSecret?{API}");
    let (s, v, t) = send(
        &server,
        Some(&admin),
        Method::POST,
        &send_path,
        Some(
            serde_json::to_vec(&json!({"secretName": "share-x", "value": "first share secret"}))
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let envelope_version = v["secretVersion"].as_str().unwrap().to_string();
    let current = || vault_version(&server, &act1, &tok1, "share-x");
    assert_eq!(current().await, (200, envelope_version.clone()));
    let big_value = "v".repeat(16 * 1024 + 1);
    let big_binary = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(vec![7u8; 16 * 1024 + 1])
    };
    let huge_body = format!(
        r#"{{"secretName":"share-x","value":"{}"}}"#,
        "v".repeat(70 * 1024)
    );
    let body = |v: Value| Some(serde_json::to_vec(&v).unwrap());
    let bad_sends: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            Some(&admin),
            send_path.clone(),
            Some(format!(r#"{{"secretName": "share-x", "value": "{SENTINEL}"#).into_bytes()),
            400,
            "InvalidRequestContent",
        ),
        (
            "unknown field",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": SENTINEL, "color": "red"})),
            400,
            "InvalidRequestContent",
        ),
        (
            "wrong type",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": 5})),
            400,
            "InvalidRequestContent",
        ),
        (
            "name of the wrong type",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": ["share-x"], "value": SENTINEL})),
            400,
            "InvalidRequestContent",
        ),
        (
            "missing value",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": "share-x"})),
            400,
            "InvalidRequestContent",
        ),
        (
            "empty value",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": ""})),
            400,
            "BadRequest",
        ),
        (
            "oversized value",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": big_value})),
            400,
            "BadRequest",
        ),
        (
            "binary value that is not base64",
            Some(&admin),
            send_path.clone(),
            body(
                json!({"secretName": "share-x", "value": SENTINEL, "contentType": "application/x-pkcs12"}),
            ),
            400,
            "BadRequest",
        ),
        (
            "content type with a control character",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": "AAAA", "contentType": "a\nb"})),
            400,
            "BadRequest",
        ),
        (
            "oversized binary value",
            Some(&admin),
            send_path.clone(),
            body(
                json!({"secretName": "share-x", "value": big_binary, "contentType": "application/octet-stream"}),
            ),
            400,
            "BadRequest",
        ),
        (
            "oversized body",
            Some(&admin),
            send_path.clone(),
            Some(huge_body.into_bytes()),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "empty body",
            Some(&admin),
            send_path.clone(),
            Some(Vec::new()),
            400,
            "InvalidRequestContent",
        ),
        (
            "a device secret's name",
            Some(&admin),
            send_path.clone(),
            body(json!({"secretName": cik, "value": SENTINEL})),
            400,
            "BadRequest",
        ),
        (
            "unknown device",
            Some(&admin),
            format!("{devices}/edge9/sendSecret?{API}"),
            body(json!({"secretName": "share-x", "value": SENTINEL})),
            404,
            "ResourceNotFound",
        ),
        (
            "no api-version",
            Some(&admin),
            format!("{devices}/edge1/sendSecret"),
            body(json!({"secretName": "share-x", "value": SENTINEL})),
            400,
            "MissingApiVersionParameter",
        ),
        (
            "no token",
            None,
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": SENTINEL})),
            401,
            "AuthenticationFailed",
        ),
        (
            "a reader",
            Some(&reader_tok),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": SENTINEL})),
            403,
            "AuthorizationFailed",
        ),
        (
            "the device's own vault token",
            Some(&tok1),
            send_path.clone(),
            body(json!({"secretName": "share-x", "value": SENTINEL})),
            401,
            "AuthenticationFailed",
        ),
    ];
    for (what, token, path, b, want, code) in bad_sends {
        let (s, v, t) = send(&server, token, Method::POST, &path, b).await;
        assert_arm_error(what, s, &v, &t, want, code);
        assert_eq!(
            current().await,
            (200, envelope_version.clone()),
            "{what} changed the envelope"
        );
    }
    assert_eq!(
        vault_version(&server, &act1, &tok1, &cik).await.0,
        200,
        "the CIK is untouched"
    );

    // ---------------- secretsSynced
    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{d}/strongbox.db"))
        .await
        .unwrap();
    let report_path = format!("/devices/{id1}/secretsSynced");
    let good = json!({"secrets": [{"name": cik, "version": "0123abcd", "outcome": "read"}]});
    let (s, _, t) = send(
        &server,
        Some(&tok1),
        Method::POST,
        &report_path,
        body(good.clone()),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let baseline = store.get_device_report(&id1).await.unwrap().unwrap();
    assert!(baseline.secrets_json.contains("0123abcd"));
    let admin_vault_tok = server.admin_token().await;
    let secret = |name: &str, version: &str, outcome: &str| json!({"name": name, "version": version, "outcome": outcome});
    let four: Vec<Value> = (0..4).map(|_| secret(&cik, "ab", "read")).collect();
    let huge = format!(
        r#"{{"secrets":[{{"name":"{cik}","version":"{}","outcome":"read"}}]}}"#,
        "a".repeat(70 * 1024)
    );
    let bad_reports: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            Some(&tok1),
            report_path.clone(),
            Some(format!(r#"{{"secrets": [{{"name": "{SENTINEL}""#).into_bytes()),
            400,
            "InvalidRequestContent",
        ),
        (
            "unknown field",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": [], "extra": SENTINEL})),
            400,
            "InvalidRequestContent",
        ),
        (
            "secrets of the wrong type",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": SENTINEL})),
            400,
            "InvalidRequestContent",
        ),
        (
            "a name of the wrong type",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": [{"name": 5, "version": "ab", "outcome": "read"}]})),
            400,
            "InvalidRequestContent",
        ),
        (
            "requestId of the wrong type",
            Some(&tok1),
            report_path.clone(),
            body(json!({"requestId": 7, "secrets": []})),
            400,
            "InvalidRequestContent",
        ),
        (
            "missing secrets",
            Some(&tok1),
            report_path.clone(),
            body(json!({})),
            400,
            "InvalidRequestContent",
        ),
        (
            "a secret that is not the device's",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": [secret(SENTINEL, "ab", "read")]})),
            400,
            "BadRequest",
        ),
        (
            "a version that is not hex",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": [secret(&cik, SENTINEL, "read")]})),
            400,
            "BadRequest",
        ),
        (
            "an unknown outcome",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": [secret(&cik, "ab", SENTINEL)]})),
            400,
            "BadRequest",
        ),
        (
            "too many secrets",
            Some(&tok1),
            report_path.clone(),
            body(json!({"secrets": four})),
            400,
            "BadRequest",
        ),
        (
            "oversized body",
            Some(&tok1),
            report_path.clone(),
            Some(huge.into_bytes()),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "empty body",
            Some(&tok1),
            report_path.clone(),
            Some(Vec::new()),
            400,
            "InvalidRequestContent",
        ),
        (
            "a request that is not pending",
            Some(&tok1),
            report_path.clone(),
            body(json!({"requestId": "no-such-request", "secrets": [secret(&cik, "ff", "read")]})),
            409,
            "NoSuchSyncRequest",
        ),
        (
            "unknown device",
            Some(&tok1),
            "/devices/00000000-0000-0000-0000-000000000000/secretsSynced".to_string(),
            body(good.clone()),
            401,
            "InvalidAuthenticationToken",
        ),
        (
            "another device's token",
            Some(&tok2),
            report_path.clone(),
            body(good.clone()),
            401,
            "InvalidAuthenticationToken",
        ),
        (
            "the admin's management token",
            Some(&admin),
            report_path.clone(),
            body(good.clone()),
            401,
            "InvalidAuthenticationToken",
        ),
        (
            "the admin's vault token",
            Some(&admin_vault_tok),
            report_path.clone(),
            body(good.clone()),
            401,
            "InvalidAuthenticationToken",
        ),
        (
            "no token",
            None,
            report_path.clone(),
            body(good.clone()),
            401,
            "InvalidAuthenticationToken",
        ),
        (
            "a forged token",
            Some("eyJhbGciOiJub25lIn0.eyJvaWQiOiJ4In0."),
            report_path.clone(),
            body(good.clone()),
            401,
            "InvalidAuthenticationToken",
        ),
    ];
    for (what, token, path, b, want, code) in bad_reports {
        let (s, v, t) = send(&server, token, Method::POST, &path, b).await;
        assert_arm_error(what, s, &v, &t, want, code);
        assert_eq!(
            store.get_device_report(&id1).await.unwrap().as_ref(),
            Some(&baseline),
            "{what} changed the report"
        );
    }
    // The control: a good report does change it.
    let (s, _, t) = send(
        &server,
        Some(&tok1),
        Method::POST,
        &report_path,
        body(json!({"secrets": [secret(&cik, "4567ef", "in sync")]})),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let now = store.get_device_report(&id1).await.unwrap().unwrap();
    assert!(now.secrets_json.contains("4567ef"), "{now:?}");

    // ---------------- who may read an operation's status
    let (s, op, t) = send(
        &server,
        Some(&admin),
        Method::POST,
        &format!("{devices}/edge1/syncSecrets?{API}"),
        None,
    )
    .await;
    assert_eq!(s, 202, "{t}");
    let sync_status = format!(
        "{devices}/edge1/operationsStatus/{}?{API}",
        op["id"].as_str().unwrap()
    );
    let (s, v, t) = send(&server, Some(&reader_tok), Method::GET, &sync_status, None).await;
    assert_eq!(s, 200, "device read is enough for a sync's status: {t}");
    assert_eq!(v["status"], "InProgress");
    let (s, v, t) = send(&server, Some(&nobody_tok), Method::GET, &sync_status, None).await;
    assert_arm_error(
        "status without any role",
        s,
        &v,
        &t,
        403,
        "AuthorizationFailed",
    );
    let (s, v, t) = send(
        &server,
        Some(&reader_tok),
        Method::POST,
        &format!("{devices}/edge1/syncSecrets?{API}"),
        None,
    )
    .await;
    assert_arm_error(
        "a reader asking for a sync",
        s,
        &v,
        &t,
        403,
        "AuthorizationFailed",
    );
    let (s, op, t) = send(
        &server,
        Some(&admin),
        Method::POST,
        &format!("{devices}/edge2/generateActivationKey?{API}"),
        None,
    )
    .await;
    assert_eq!(s, 202, "{t}");
    let key_status = format!(
        "{devices}/edge2/operationsStatus/{}?{API}",
        op["id"].as_str().unwrap()
    );
    let key = loop {
        let (s, v, t) = send(&server, Some(&admin), Method::GET, &key_status, None).await;
        assert_eq!(s, 200, "{t}");
        if v["status"] != "InProgress" {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(key["properties"]["activationKey"].is_string(), "{key}");
    let (s, v, t) = send(&server, Some(&reader_tok), Method::GET, &key_status, None).await;
    assert_arm_error(
        "a reader reading a key generation",
        s,
        &v,
        &t,
        403,
        "AuthorizationFailed",
    );
    assert!(!t.contains("activationKey"));

    // ---------------- the audit chains
    let records = |rows: Vec<strongbox_store::AuditRow>| {
        rows.into_iter()
            .map(|r| serde_json::from_str::<Value>(&r.entry.record_json).unwrap())
            .collect::<Vec<_>>()
    };
    let sub_chain = records(
        store
            .read_audit(&format!("subscription:{sub}"), 0, 10_000)
            .await
            .unwrap(),
    );
    let find = |op: &str, status: u64, oid: Option<&str>| {
        sub_chain.iter().any(|r| {
            r["operationName"] == op
                && r["properties"]["httpStatusCode"] == status
                && match oid {
                    Some(o) => r["identity"]["claim"]["oid"] == o,
                    None => r["identity"].is_null(),
                }
        })
    };
    let send_op = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/sendSecret/action";
    let report_op = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/secretsSynced/device/action";
    let status_op = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/operationsStatus/read";
    let device1_oid = act1["principalId"].as_str().unwrap();
    let device2_oid = act2["principalId"].as_str().unwrap();
    for (op, status, oid) in [
        (send_op, 200, Some(admin_oid.as_str())),
        (send_op, 400, Some(admin_oid.as_str())),
        (send_op, 413, Some(admin_oid.as_str())),
        (send_op, 404, Some(admin_oid.as_str())),
        (send_op, 403, Some(reader_oid.as_str())),
        (send_op, 401, None),
        (report_op, 200, Some(device1_oid)),
        (report_op, 400, Some(device1_oid)),
        (report_op, 409, Some(device1_oid)),
        (report_op, 401, Some(device2_oid)),
        (report_op, 401, Some(admin_oid.as_str())),
        (report_op, 401, None),
        (status_op, 200, Some(reader_oid.as_str())),
        (status_op, 403, Some(reader_oid.as_str())),
        (status_op, 403, Some(nobody["object_id"].as_str().unwrap())),
    ] {
        assert!(
            find(op, status, oid),
            "no {op} {status} record for {oid:?} in the subscription chain"
        );
    }
    // The envelope was read and written on the vault by the device's identity (the server acts
    // through its Get+Set grant), and those records are in the vault's own chain.
    let vault = store
        .get_vault_by_name(act1["vaultName"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let vault_chain = records(store.read_audit(&vault.id, 0, 10_000).await.unwrap());
    for op in ["SecretGet", "SecretSet"] {
        assert!(
            vault_chain.iter().any(|r| r["operationName"] == op
                && r["identity"]["claim"]["oid"] == device1_oid
                && r["properties"]["clientInfo"] == "strongbox device CIK channel"),
            "no {op} by the device identity in the vault chain"
        );
    }
    // No value anywhere: not the customer secret, not the sentinel, not the CIK.
    let cik_value = {
        let vault_name = act1["vaultName"].as_str().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let ca = std::fs::read(server.creds["ca_cert"].as_str().unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .resolve(&format!("{vault_name}.vault.localhost"), addr)
            .build()
            .unwrap();
        let v: Value = client
            .get(format!(
                "{}secrets/{cik}?api-version=7.6",
                act1["vaultUri"].as_str().unwrap()
            ))
            .bearer_auth(&tok1)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["value"].as_str().unwrap().to_string()
    };
    let all = format!("{sub_chain:?}{vault_chain:?}");
    for value in [SENTINEL, "first share secret", cik_value.as_str()] {
        assert!(!all.contains(value), "an audit record holds a secret value");
    }
}
