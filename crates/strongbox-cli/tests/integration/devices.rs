//! Edge devices on the real binary: the device resource and its system-assigned identity, the
//! activation-key operation (refusals that create nothing, a failed step completed by a retry
//! without duplicates, regeneration that leaves the vault alone), the one-time activation
//! exchange followed by a real signed client assertion and a CIK read with Get+Set only, and
//! deletion with and without consent to delete the vault.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const API: &str = "api-version=2023-07-01";

pub(crate) async fn mgmt_token(server: &Server) -> String {
    let tenant = server.creds["tenant_id"].as_str().unwrap();
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/{tenant}/oauth2/v2.0/token",
            server.port
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", server.creds["client_id"].as_str().unwrap()),
            (
                "client_secret",
                server.creds["client_secret"].as_str().unwrap(),
            ),
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

async fn arm(
    server: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .client
        .request(method, format!("https://localhost:{}{path}", server.port));
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

/// Runs the CLI with the server's credentials (and `stdin`, if given).
fn sb(server_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let creds = server_dir.join("dev-credentials.json");
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--credentials")
        .arg(&creds)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Ctx<'a> {
    server: &'a Server,
    dir: &'a std::path::Path,
    sub: String,
    token: String,
}

impl Ctx<'_> {
    fn group(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/strongbox-dev", self.sub)
    }
    fn device(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/{name}",
            self.group()
        )
    }
    fn vault(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.KeyVault/vaults/{name}",
            self.group()
        )
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        arm(
            self.server,
            Some(&self.token),
            Method::GET,
            &format!("{path}{sep}{API}"),
            None,
        )
        .await
    }
    async fn show(&self, device: &str) -> Value {
        let (s, v) = self.get(&self.device(device)).await;
        assert_eq!(s, 200, "{v}");
        v
    }
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        sb(self.dir, args, stdin)
    }
    async fn locks_on(&self, vault: &str) -> usize {
        let (s, v) = arm(
            self.server,
            Some(&self.token),
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Authorization/locks?api-version=2020-05-01",
                self.vault(vault)
            ),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["value"].as_array().unwrap().len()
    }
    async fn diagnostic_settings(&self, vault: &str) -> Vec<Value> {
        let (s, v) = arm(
            self.server,
            Some(&self.token),
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Insights/diagnosticSettings?api-version=2021-05-01-preview",
                self.vault(vault)
            ),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["value"].as_array().unwrap().clone()
    }
}

/// A P-256 key pair: (PKCS#8 DER of the private key, public JWK).
pub(crate) fn device_key() -> (Vec<u8>, Value) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    assert_eq!(point.len(), 65);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
    (pkcs8.as_ref().to_vec(), jwk)
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// A token for the device identity by signed client assertion (status, body).
pub(crate) async fn assertion_token(server: &Server, act: &Value, pkcs8: &[u8]) -> (u16, Value) {
    // The server's time (it may run a moved clock), from a token it just issued.
    let now = claims_of(&server.admin_token().await)["iat"]
        .as_i64()
        .unwrap();
    let client_id = act["clientId"].as_str().unwrap();
    let endpoint = act["tokenEndpoint"].as_str().unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(act["keyId"].as_str().unwrap().to_string());
    let claims = json!({"iss": client_id, "sub": client_id, "aud": endpoint,
        "nbf": now - 10, "exp": now + 300, "jti": uuid_like()});
    let assertion =
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(pkcs8)).unwrap();
    let resp = server
        .client
        .post(endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
            ("scope", act["vaultScope"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn activate(server: &Server, key: &str, jwk: &Value) -> (u16, Value) {
    arm(
        server,
        None,
        Method::POST,
        "/devices/activate",
        Some(json!({"activationKey": key, "publicKey": jwk})),
    )
    .await
}

/// A client that reaches `vault` on the data plane with the server's CA.
fn vault_client(server: &Server, vault: &str) -> reqwest::Client {
    let ca = std::fs::read(server.creds["ca_cert"].as_str().unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve(
            &format!("{vault}.vault.localhost"),
            format!("127.0.0.1:{}", server.port).parse().unwrap(),
        )
        .build()
        .unwrap()
}

async fn data(
    client: &reqwest::Client,
    token: &str,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn devices_provision_activate_and_delete_with_and_without_consent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--dev-clock"]).await;
    let ctx = Ctx {
        server: &server,
        dir: dir.path(),
        sub: server.creds["subscription_id"]
            .as_str()
            .unwrap()
            .to_string(),
        token: mgmt_token(&server).await,
    };

    // --- 1. the device resource and its identity
    let (code, out, err) = ctx.cli(&["device", "create", "-n", "edge1", "-o", "json"], None);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let principal = created["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(created["identity"]["type"], "SystemAssigned");
    assert_eq!(created["identity"]["tenantId"], server.creds["tenant_id"]);
    assert_eq!(created["properties"]["identityStatus"], "Disabled");
    assert_eq!(
        created["properties"]["dataBoxEdgeDeviceStatus"],
        "ReadyToSetup"
    );
    assert!(created["properties"]["keyVault"].is_null());
    let (code, out, _) = ctx.cli(&["device", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains("edge1") && out.contains(&principal), "{out}");
    // PUT again keeps the same identity.
    let (s, again) = arm(
        &server,
        Some(&ctx.token),
        Method::PUT,
        &format!("{}?{API}", ctx.device("edge1")),
        Some(json!({"location": "local", "tags": {"site": "a"}})),
    )
    .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["identity"]["principalId"], principal.as_str());

    // Bad input, in ARM's shape, creating nothing.
    for (path, body, want) in [
        (ctx.device("-bad"), json!({"location": "local"}), 400),
        (
            ctx.device("edge9"),
            json!({"location": "local", "color": "red"}),
            400,
        ),
        (ctx.device("edge9"), json!({"location": 5}), 400),
        (
            ctx.device("edge9"),
            json!({"location": "local", "identity": {"type": "UserAssigned"}}),
            400,
        ),
        (ctx.device("edge1"), json!({"location": "westeurope"}), 409),
    ] {
        let (s, v) = arm(
            &server,
            Some(&ctx.token),
            Method::PUT,
            &format!("{path}?{API}"),
            Some(body),
        )
        .await;
        assert_eq!(s, want, "{v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (s, _) = arm(
        &server,
        None,
        Method::GET,
        &format!("{}?{API}", ctx.device("edge1")),
        None,
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(ctx.get(&ctx.device("edge9")).await.0, 404);

    // --- 2. refusals that create nothing: invalid name, a live vault's name, a deleted one's
    let (code, _, err) = ctx.cli(
        &[
            "device",
            "activation-key",
            "-n",
            "edge1",
            "--vault-name",
            "x",
        ],
        None,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("VaultNameNotValid"), "{err}");
    let (code, _, err) = ctx.cli(
        &[
            "device",
            "activation-key",
            "-n",
            "edge1",
            "--vault-name",
            "dev",
        ],
        None,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("VaultAlreadyExists"), "{err}");
    let tenant = server.creds["tenant_id"].as_str().unwrap();
    let (s, v) = arm(
        &server,
        Some(&ctx.token),
        Method::PUT,
        &format!("{}?{API}", ctx.vault("gone-vault")),
        Some(
            json!({"location": "local", "properties": {"tenantId": tenant,
            "sku": {"family": "A", "name": "standard"}, "accessPolicies": []}}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = arm(
        &server,
        Some(&ctx.token),
        Method::DELETE,
        &format!("{}?{API}", ctx.vault("gone-vault")),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (code, _, err) = ctx.cli(
        &[
            "device",
            "activation-key",
            "-n",
            "edge1",
            "--vault-name",
            "gone-vault",
        ],
        None,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("deleted state"), "{err}");
    let d = ctx.show("edge1").await;
    assert!(d["properties"]["keyVault"].is_null(), "{d}");
    assert_eq!(d["properties"]["identityStatus"], "Disabled");

    // --- a non-blocking step fails (the audit account name is taken): as in Azure the key is
    // still issued, the operation says which steps are left with a warning, the device raises
    // an alert naming the fix, and recover-vault completes them without duplicates.
    let (s, v) = arm(
        &server,
        Some(&ctx.token),
        Method::PUT,
        &format!(
            "{}/providers/Microsoft.Storage/storageAccounts/edge1vaultaudit?api-version=2024-01-01",
            ctx.group()
        ),
        Some(json!({"location": "local"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (code, out, err) = ctx.cli(
        &[
            "device",
            "activation-key",
            "-n",
            "edge1",
            "--vault-name",
            "edge1-vault",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "warning: step CreateAuditStorage did not complete (StorageAccountAlreadyTaken"
        ) && err.contains("warning: step CreateDiagnosticSetting")
            && err.contains("recover-vault --name edge1"),
        "{err}"
    );
    let op: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(op["status"], "Succeeded", "{op}");
    let key0 = op["properties"]["activationKey"]
        .as_str()
        .unwrap()
        .to_string();
    let warned: Vec<&str> = op["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        warned,
        ["CreateAuditStorage", "CreateDiagnosticSetting"],
        "{op}"
    );
    let step_status = |op: &Value, name: &str| {
        op["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(step_status(&op, "CreateAuditStorage"), "Warning");
    assert_eq!(step_status(&op, "StoreChannelIntegrityKey"), "Done");
    assert_eq!(step_status(&op, "IssueActivationKey"), "Done");
    let d = ctx.show("edge1").await;
    let kv = &d["properties"]["keyVault"];
    assert_eq!(kv["name"], "edge1-vault", "{d}");
    assert_eq!(kv["locked"], true);
    assert!(kv["auditStorageAccount"].is_null() && kv["diagnosticSetting"].is_null());
    let cik0 = kv["channelIntegrityKeyVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(d["properties"]["identityStatus"], "Enabled");
    assert_eq!(d["properties"]["keyVaultSyncStatus"], "KeyVaultSyncPending");
    assert_eq!(ctx.locks_on("edge1-vault").await, 1);
    assert!(ctx.diagnostic_settings("edge1-vault").await.is_empty());
    let (_, vault) = ctx.get(&ctx.vault("edge1-vault")).await;
    assert_eq!(
        vault["properties"]["accessPolicies"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{vault}"
    );
    assert_eq!(vault["properties"]["softDeleteRetentionInDays"], 90);
    assert_eq!(vault["properties"]["enableSoftDelete"], true);
    assert_eq!(vault["properties"]["sku"]["name"], "standard");
    let (s, alerts) = ctx.get(&format!("{}/alerts", ctx.device("edge1"))).await;
    assert_eq!(s, 200, "{alerts}");
    let a = &alerts["value"][0]["properties"];
    assert_eq!(alerts["value"].as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(
        (a["alertType"].as_str(), a["severity"].as_str()),
        (Some("AuditLoggingNotConfigured"), Some("Warning"))
    );
    assert!(
        a["recommendation"]
            .as_str()
            .unwrap()
            .contains("strongbox device recover-vault --name edge1"),
        "{a}"
    );
    // The vault is the device's now: another name is refused.
    let (code, _, err) = ctx.cli(
        &[
            "device",
            "activation-key",
            "-n",
            "edge1",
            "--vault-name",
            "other-vault",
        ],
        None,
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("DeviceVaultAlreadyConfigured"), "{err}");
    // While the name is still taken, recovery warns again and changes nothing else.
    let (code, _, err) = ctx.cli(&["device", "recover-vault", "--name", "edge1"], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("StorageAccountAlreadyTaken"), "{err}");
    assert_eq!(ctx.locks_on("edge1-vault").await, 1);
    let (s, _) = arm(
        &server,
        Some(&ctx.token),
        Method::DELETE,
        &format!(
            "{}/providers/Microsoft.Storage/storageAccounts/edge1vaultaudit?api-version=2024-01-01",
            ctx.group()
        ),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (code, _, err) = ctx.cli(&["device", "recover-vault", "--name", "edge1"], None);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let (_, alerts) = ctx.get(&format!("{}/alerts", ctx.device("edge1"))).await;
    assert_eq!(
        alerts["value"],
        json!([]),
        "the alert clears once the steps are done"
    );
    let (code, key1, err) = ctx.cli(&["device", "activation-key", "-n", "edge1"], None);
    assert_eq!(code, 0, "{err}");
    let key1 = key1.trim().to_string();
    assert!(key1.contains('#'), "{key1}");

    // The complete state, with nothing twice.
    let d = ctx.show("edge1").await;
    let kv = d["properties"]["keyVault"].clone();
    assert_eq!(kv["auditStorageAccount"], "edge1vaultaudit", "{d}");
    assert_eq!(d["properties"]["keyVaultSyncStatus"], "KeyVaultSyncPending");
    assert_eq!(ctx.locks_on("edge1-vault").await, 1);
    let settings = ctx.diagnostic_settings("edge1-vault").await;
    assert_eq!(settings.len(), 1);
    assert!(
        settings[0]["properties"]["storageAccountId"]
            .as_str()
            .unwrap()
            .ends_with("/storageAccounts/edge1vaultaudit")
    );
    assert_eq!(
        settings[0]["properties"]["logs"][0]["category"],
        "AuditEvent"
    );
    let (_, vault) = ctx.get(&ctx.vault("edge1-vault")).await;
    let policies = vault["properties"]["accessPolicies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{vault}");
    assert_eq!(policies[0]["objectId"], principal.as_str());
    assert_eq!(policies[0]["permissions"]["secrets"], json!(["get", "set"]));
    let (_, acct) = arm(
        &server,
        Some(&ctx.token),
        Method::GET,
        &format!(
            "{}/providers/Microsoft.Storage/storageAccounts/edge1vaultaudit?api-version=2024-01-01",
            ctx.group()
        ),
        None,
    )
    .await;
    assert_eq!(acct["tags"]["keyVaultName"], "edge1-vault", "{acct}");
    let cik_version = kv["channelIntegrityKeyVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cik_version, cik0, "no second CIK version");

    // Regenerating: a new key, the vault untouched (no new record in its audit chain), the
    // older key refused.
    let vault_records = || {
        let (code, out, err) = sb(
            dir.path(),
            &[
                "audit",
                "query",
                "--vault",
                "edge1-vault",
                "--from",
                "30d",
                "--max",
                "1000",
                "-o",
                "json",
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        // Reads (the test's own, this query's) are audited too; count the rest.
        let records: Value = serde_json::from_str(&out).unwrap();
        let records = records.as_array().cloned().unwrap_or_default();
        assert!(!records.is_empty());
        records
            .iter()
            .filter(|r| {
                !r["operationName"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("/read")
            })
            .count()
    };
    let before = vault_records();
    let (code, key2, err) = ctx.cli(&["device", "activation-key", "-n", "edge1"], None);
    assert_eq!(code, 0, "{err}");
    let key2 = key2.trim().to_string();
    assert_ne!(key1, key2);
    assert_eq!(vault_records(), before, "regenerating touched the vault");
    assert_eq!(
        ctx.show("edge1").await["properties"]["keyVault"]["channelIntegrityKeyVersion"],
        cik_version.as_str()
    );

    // --- 3. activation: once, with the device's own key
    let (pkcs8, jwk) = device_key();
    for replaced in [&key0, &key1] {
        let (s, v) = activate(&server, replaced, &jwk).await;
        assert_eq!(s, 401, "a replaced key must not activate: {v}");
    }
    let mut tampered = key2.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let (s, v) = activate(&server, &String::from_utf8(tampered).unwrap(), &jwk).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = activate(
        &server,
        &key2,
        &json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = arm(
        &server,
        None,
        Method::POST,
        "/devices/activate",
        Some(json!({"activationKey": key2, "publicKey": jwk, "extra": 1})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, act) = activate(&server, &key2, &jwk).await;
    assert_eq!(s, 200, "{act}");
    assert_eq!(act["principalId"], principal.as_str());
    assert_eq!(act["tenantId"], tenant);
    assert!(
        act["caCertificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        act["vaultUri"]
            .as_str()
            .unwrap()
            .starts_with("https://edge1-vault.vault.localhost:")
    );
    assert!(act.get("clientSecret").is_none());
    let (s, v) = activate(&server, &key2, &jwk).await;
    assert_eq!(s, 409, "a second use must be refused: {v}");
    assert_eq!(v["error"]["code"], "ActivationKeyAlreadyUsed");
    assert_eq!(
        ctx.show("edge1").await["properties"]["dataBoxEdgeDeviceStatus"],
        "Online"
    );

    // A token by signed assertion, then the CIK read with Get; List is not granted.
    let (s, tok) = assertion_token(&server, &act, &pkcs8).await;
    assert_eq!(s, 200, "{tok}");
    let device_token = tok["access_token"].as_str().unwrap().to_string();
    let vc = vault_client(&server, "edge1-vault");
    let vault_url = act["vaultUri"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let cik_name = act["channelIntegrityKeyName"].as_str().unwrap();
    let (s, cik) = data(
        &vc,
        &device_token,
        Method::GET,
        format!("{vault_url}/secrets/{cik_name}?api-version=7.6"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{cik}");
    assert_eq!(
        B64.decode(cik["value"].as_str().unwrap()).unwrap().len(),
        32
    );
    assert!(cik["id"].as_str().unwrap().ends_with(&cik_version));
    let (s, _) = data(
        &vc,
        &device_token,
        Method::GET,
        format!("{vault_url}/secrets?api-version=7.6"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = data(
        &vc,
        &device_token,
        Method::PUT,
        format!("{vault_url}/secrets/bmc-password?api-version=7.6"),
        Some(json!({"value": "keep-me"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = data(
        &vc,
        &device_token,
        Method::DELETE,
        format!("{vault_url}/secrets/bmc-password?api-version=7.6"),
        None,
    )
    .await;
    assert_eq!(s, 403);

    // --- 8a. delete without consent: device and identity go, the vault stays whole
    let (code, out, err) = ctx.cli(&["device", "delete", "-n", "edge1", "--keep-vault"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kept"), "{out}");
    assert_eq!(ctx.get(&ctx.device("edge1")).await.0, 404);
    let (s, _) = assertion_token(&server, &act, &pkcs8).await;
    assert_ne!(s, 200, "the deleted identity must get no token");
    assert_eq!(ctx.get(&ctx.vault("edge1-vault")).await.0, 200);
    assert_eq!(ctx.locks_on("edge1-vault").await, 1);
    assert_eq!(ctx.diagnostic_settings("edge1-vault").await.len(), 1);
    let admin_oid = {
        let t = server.admin_token().await;
        let claims: Value =
            serde_json::from_slice(&B64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };
    let (s, v) = arm(
        &server,
        Some(&ctx.token),
        Method::PUT,
        &format!("{}/accessPolicies/add?{API}", ctx.vault("edge1-vault")),
        Some(json!({"properties": {"accessPolicies": [{"tenantId": tenant, "objectId": admin_oid, "permissions": {"secrets": ["get"]}}]}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let admin = server.admin_token().await;
    let (s, v) = data(
        &vc,
        &admin,
        Method::GET,
        format!("{vault_url}/secrets/bmc-password?api-version=7.6"),
        None,
    )
    .await;
    assert_eq!((s, v["value"].as_str()), (200, Some("keep-me")));
    let (s, _) = data(
        &vc,
        &admin,
        Method::GET,
        format!("{vault_url}/secrets/{cik_name}?api-version=7.6"),
        None,
    )
    .await;
    assert_eq!(s, 200);

    // --- 8b. delete with consent: name typed back, then yes
    let (code, _, err) = ctx.cli(&["device", "create", "-n", "edge2"], None);
    assert_eq!(code, 0, "{err}");
    let (code, key3, err) = ctx.cli(&["device", "activation-key", "-n", "edge2"], None);
    assert_eq!(code, 0, "{err}");
    let vault2 = ctx.show("edge2").await["properties"]["keyVault"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(vault2.starts_with("edge2-kv"), "{vault2}");
    // The key expires after 72 hours.
    let (s, _) = arm(
        &server,
        None,
        Method::POST,
        "/_dev/clock?advance_secs=260000",
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (_, jwk2) = device_key();
    let (s, v) = activate(&server, key3.trim(), &jwk2).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "ActivationKeyExpired");
    let ctx = Ctx {
        token: mgmt_token(&server).await,
        ..ctx
    };
    for wrong in ["edge3\n", "edge2\nmaybe\n"] {
        let (code, _, err) = ctx.cli(&["device", "delete", "-n", "edge2"], Some(wrong));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("nothing was deleted"), "{err}");
        assert_eq!(ctx.get(&ctx.device("edge2")).await.0, 200);
    }
    let (code, out, err) = ctx.cli(&["device", "delete", "-n", "edge2"], Some("edge2\nyes\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("soft-deleted"), "{out}");
    assert_eq!(ctx.get(&ctx.device("edge2")).await.0, 404);
    assert_eq!(ctx.get(&ctx.vault(&vault2)).await.0, 404);
    let (s, deleted) = ctx
        .get(&format!(
            "/subscriptions/{}/providers/Microsoft.KeyVault/deletedVaults",
            ctx.sub
        ))
        .await;
    assert_eq!(s, 200);
    assert!(deleted.to_string().contains(&vault2), "{deleted}");
    // Deleting it again is ARM's idempotent 204; a bad flag is a 400.
    let (s, _) = arm(
        &server,
        Some(&ctx.token),
        Method::DELETE,
        &format!("{}?{API}&deleteVault=true", ctx.device("edge2")),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = arm(
        &server,
        Some(&ctx.token),
        Method::DELETE,
        &format!("{}?{API}&deleteVault=maybe", ctx.device("edge2")),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
}

/// Every file under `dir`, recursively: (path, bytes).
fn all_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
    out
}

#[tokio::test]
async fn activation_keys_survive_a_restart_and_stay_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    for d in ["edge1", "edge2"] {
        let (code, _, err) = sb(dir.path(), &["device", "create", "-n", d], None);
        assert_eq!(code, 0, "{err}");
    }
    let key_of = |device: &str| {
        let (code, out, err) = sb(
            dir.path(),
            &["device", "activation-key", "-n", device, "-o", "json"],
            None,
        );
        assert_eq!(code, 0, "{err}");
        let op: Value = serde_json::from_str(&out).unwrap();
        (
            op["id"].as_str().unwrap().to_string(),
            op["properties"]["activationKey"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let (op1, key1) = key_of("edge1");
    let (_, key2) = key_of("edge2");
    // edge2's key is spent before the restart.
    let (_, jwk2) = device_key();
    let (s, v) = activate(&server, &key2, &jwk2).await;
    assert_eq!(s, 200, "{v}");

    server.stop();
    let server = Server::start(dir.path(), &[]).await;
    // Only the hash of the key's one-time secret was kept: neither the key nor its secret is
    // in any file of the server (database, WAL, logs).
    let secret = {
        let body = key1.rsplit_once('#').unwrap().0;
        let json: Value = serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        json["enrollmentSecret"].as_str().unwrap().to_string()
    };
    assert!(secret.len() >= 40, "{secret}");
    let files = all_files(dir.path());
    assert!(
        files.iter().any(|(p, _)| p.ends_with("strongbox.db")),
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(&secret), "{path} holds the enrolment secret");
        assert!(
            !text.contains(&key1[..60]),
            "{path} holds the activation key"
        );
    }
    // The operation no longer shows the key after the restart, and says the key still works.
    let token = mgmt_token(&server).await;
    let (s, op) = arm(
        &server,
        Some(&token),
        Method::GET,
        &format!(
            "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/edge1/operationsStatus/{op1}?{API}"
        ),
        None,
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert!(op["properties"]["activationKey"].is_null(), "{op}");
    assert!(
        op["properties"]["message"]
            .as_str()
            .unwrap()
            .contains("still activates"),
        "{op}"
    );

    // The key issued before the restart activates, once; the key spent before it stays spent.
    let (pkcs8, jwk) = device_key();
    let (s, act) = activate(&server, &key1, &jwk).await;
    assert_eq!(s, 200, "{act}");
    let (s, tok) = assertion_token(&server, &act, &pkcs8).await;
    assert_eq!(s, 200, "{tok}");
    let (s, v) = activate(&server, &key1, &jwk).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("ActivationKeyAlreadyUsed"))
    );
    let (s, v) = activate(&server, &key2, &jwk2).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("ActivationKeyAlreadyUsed"))
    );
    // And across one more restart.
    let mut server = server;
    server.stop();
    let server = Server::start(dir.path(), &[]).await;
    for k in [&key1, &key2] {
        let (s, v) = activate(&server, k, &jwk).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (409, Some("ActivationKeyAlreadyUsed"))
        );
    }
}
