//! The management API (vaults, deleted vaults, locks) over HTTPS with the real binary: bad input
//! on every endpoint gets a 4xx in ARM's error shape, lock changes land in the audit chains,
//! and soft-deleted vaults are purged when the (dev) clock passes their retention.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use strongbox_store::Store;

const API: &str = "api-version=2026-05-15";
const LOCKS_API: &str = "api-version=2020-05-01";
/// A marker that must never come back in an error (values are not echoed).
const MARKER: &str = "s3cr3t-MARKER-0451";

struct Mgmt<'a> {
    server: &'a Server,
    token: String,
    sub: String,
    tenant: String,
    admin_oid: String,
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn mgmt_token(server: &Server, client_id: &str, secret: &str) -> String {
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

impl<'a> Mgmt<'a> {
    async fn new(server: &'a Server) -> Mgmt<'a> {
        let token = mgmt_token(
            server,
            server.creds["client_id"].as_str().unwrap(),
            server.creds["client_secret"].as_str().unwrap(),
        )
        .await;
        Mgmt {
            admin_oid: claims(&token)["oid"].as_str().unwrap().to_string(),
            token,
            sub: server.creds["subscription_id"]
                .as_str()
                .unwrap()
                .to_string(),
            tenant: server.creds["tenant_id"].as_str().unwrap().to_string(),
            server,
        }
    }

    fn url(&self, path: &str, query: &str) -> String {
        format!("https://localhost:{}{path}?{query}", self.server.port)
    }

    fn vault_path(&self, rg: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}",
            self.sub
        )
    }

    /// Sends a raw request; returns status and JSON body (Null if none).
    async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        url: String,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = self.server.client.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let query = if path.contains("Microsoft.Authorization/locks") {
            LOCKS_API
        } else {
            API
        };
        self.send(
            Some(&self.token),
            method,
            self.url(path, query),
            body.map(|b| b.to_string()),
        )
        .await
    }

    fn vault_body(&self, extra: Value) -> Value {
        let mut props = json!({
            "tenantId": self.tenant,
            "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [{"tenantId": self.tenant, "objectId": self.admin_oid,
                "permissions": {"secrets": ["all"]}}],
        });
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"location": "westeurope", "properties": props})
    }

    async fn create(&self, rg: &str, name: &str, extra: Value) -> Value {
        let (status, body) = self
            .call(
                Method::PUT,
                &self.vault_path(rg, name),
                Some(self.vault_body(extra)),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }
}

/// A client that also resolves the given vault hosts to the server.
fn data_client(server: &Server, vaults: &[&str]) -> reqwest::Client {
    let ca = std::fs::read(server.creds["ca_cert"].as_str().unwrap()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(30));
    for v in vaults {
        b = b.resolve(&format!("{v}.vault.localhost"), addr);
    }
    b.build().unwrap()
}

fn assert_arm_error(what: &str, status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    let err = &body["error"];
    assert_eq!(err["code"], want_code, "{what}: {body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(
        !body.to_string().contains(MARKER),
        "{what} echoed a value: {body}"
    );
}

#[tokio::test]
async fn bad_input_on_every_management_endpoint_gets_arm_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let m = Mgmt::new(&server).await;
    m.create("rg", "target", json!({})).await;
    let sub = m.sub.clone();
    let vault = m.vault_path("rg", "target");
    let rg_locks =
        format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Authorization/locks");
    let sdk_vault_locks = format!(
        "/subscriptions/{sub}/resourcegroups/rg/providers/Microsoft.KeyVault//vaults/target/providers/Microsoft.Authorization/locks"
    );
    let valid_vault = m.vault_body(json!({})).to_string();
    let oversized = format!(
        "{{\"location\":\"westeurope\",\"tags\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );

    // (what, method, path, body, status, code)
    let body_cases: Vec<(&str, Method, String, String, u16, &str)> = vec![
        (
            "vault PUT malformed",
            Method::PUT,
            vault.clone(),
            "{\"location\":".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT not an object",
            Method::PUT,
            vault.clone(),
            "[1,2]".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT empty",
            Method::PUT,
            vault.clone(),
            String::new(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT unknown field",
            Method::PUT,
            vault.clone(),
            json!({"location": "westeurope", "properties": {}, "colour": MARKER}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT unknown property",
            Method::PUT,
            vault.clone(),
            m.vault_body(json!({"enableSoftDeleet": true})).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT wrong type",
            Method::PUT,
            vault.clone(),
            m.vault_body(json!({"softDeleteRetentionInDays": MARKER}))
                .to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT wrong nested type",
            Method::PUT,
            vault.clone(),
            m.vault_body(
                json!({"accessPolicies": [{"tenantId": m.tenant, "objectId": m.admin_oid,
                "permissions": {"secrets": MARKER}}]}),
            )
            .to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PUT bad permission",
            Method::PUT,
            vault.clone(),
            m.vault_body(
                json!({"accessPolicies": [{"tenantId": m.tenant, "objectId": m.admin_oid,
                "permissions": {"secrets": ["get", "steal"]}}]}),
            )
            .to_string(),
            400,
            "BadRequest",
        ),
        (
            "vault PUT bad location",
            Method::PUT,
            vault.clone(),
            json!({"location": "west/europe", "properties": {}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "vault PUT oversized",
            Method::PUT,
            vault.clone(),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "vault PUT invalid name",
            Method::PUT,
            m.vault_path("rg", "1-bad_name"),
            valid_vault.clone(),
            400,
            "VaultNameNotValid",
        ),
        (
            "vault PUT invalid group",
            Method::PUT,
            m.vault_path("rg.", "fine"),
            valid_vault.clone(),
            400,
            "BadRequest",
        ),
        (
            "vault PATCH malformed",
            Method::PATCH,
            vault.clone(),
            "{".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PATCH unknown field",
            Method::PATCH,
            vault.clone(),
            json!({"sku": "premium"}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PATCH wrong type",
            Method::PATCH,
            vault.clone(),
            json!({"tags": MARKER}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault PATCH oversized",
            Method::PATCH,
            vault.clone(),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "vault PATCH invalid name",
            Method::PATCH,
            m.vault_path("rg", "a--b"),
            "{}".into(),
            400,
            "VaultNameNotValid",
        ),
        (
            "policies malformed",
            Method::PUT,
            format!("{vault}/accessPolicies/add"),
            "nope".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "policies unknown field",
            Method::PUT,
            format!("{vault}/accessPolicies/add"),
            json!({"properties": {"accessPolicies": [], "extra": 1}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "policies wrong type",
            Method::PUT,
            format!("{vault}/accessPolicies/add"),
            json!({"properties": {"accessPolicies": MARKER}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "policies bad kind",
            Method::PUT,
            format!("{vault}/accessPolicies/merge"),
            json!({"properties": {"accessPolicies": []}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "policies oversized",
            Method::PUT,
            format!("{vault}/accessPolicies/add"),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "policies invalid name",
            Method::PUT,
            format!("{}/accessPolicies/add", m.vault_path("rg", "x")),
            json!({"properties": {"accessPolicies": []}}).to_string(),
            400,
            "VaultNameNotValid",
        ),
        (
            "check name unknown field",
            Method::POST,
            format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/checkNameAvailability"),
            json!({"name": "ok-name", "type": "Microsoft.KeyVault/vaults", "x": 1}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "check name wrong type",
            Method::POST,
            format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/checkNameAvailability"),
            json!({"name": 5, "type": "Microsoft.KeyVault/vaults"}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "check name other type",
            Method::POST,
            format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/checkNameAvailability"),
            json!({"name": "ok-name", "type": "Microsoft.Storage/storageAccounts"}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "group lock malformed",
            Method::PUT,
            format!("{rg_locks}/l1"),
            "{\"properties\"".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "group lock unknown field",
            Method::PUT,
            format!("{rg_locks}/l1"),
            json!({"properties": {"level": "ReadOnly", "colour": MARKER}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "group lock wrong type",
            Method::PUT,
            format!("{rg_locks}/l1"),
            json!({"properties": {"level": 3}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "group lock bad level",
            Method::PUT,
            format!("{rg_locks}/l1"),
            json!({"properties": {"level": "NotSpecified"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "group lock long notes",
            Method::PUT,
            format!("{rg_locks}/l1"),
            json!({"properties": {"level": "ReadOnly", "notes": "n".repeat(513)}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "group lock oversized",
            Method::PUT,
            format!("{rg_locks}/l1"),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "group lock invalid name",
            Method::PUT,
            format!("{rg_locks}/a:b"),
            json!({"properties": {"level": "ReadOnly"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "vault lock unknown field",
            Method::PUT,
            format!("{sdk_vault_locks}/l1"),
            json!({"properties": {"level": "ReadOnly"}, "colour": 1}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault lock malformed",
            Method::PUT,
            format!("{sdk_vault_locks}/l1"),
            "}".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "vault lock oversized",
            Method::PUT,
            format!("{sdk_vault_locks}/l1"),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
    ];
    for (what, method, path, body, status, code) in body_cases {
        let query = if path.contains("Microsoft.Authorization/locks") {
            LOCKS_API
        } else {
            API
        };
        let (s, b) = m
            .send(Some(&m.token), method, m.url(&path, query), Some(body))
            .await;
        assert_arm_error(what, s, &b, status, code);
    }

    // Paths, queries and methods.
    let deleted = format!(
        "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults"
    );
    let query_cases: Vec<(&str, Method, String, String, u16, &str)> = vec![
        (
            "GET invalid name",
            Method::GET,
            m.vault_path("rg", "ab"),
            API.into(),
            400,
            "VaultNameNotValid",
        ),
        (
            "DELETE invalid name",
            Method::DELETE,
            m.vault_path("rg", "-x-"),
            API.into(),
            400,
            "VaultNameNotValid",
        ),
        (
            "GET missing",
            Method::GET,
            m.vault_path("rg", "absent"),
            API.into(),
            404,
            "ResourceNotFound",
        ),
        (
            "list bad $top",
            Method::GET,
            format!(
                "{}/providers/Microsoft.KeyVault/vaults",
                &vault[..vault.find("/providers").unwrap()]
            ),
            format!("{API}&$top=0"),
            400,
            "BadRequest",
        ),
        (
            "list bad $skiptoken",
            Method::GET,
            format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults"),
            format!("{API}&$skiptoken=%2F..%2F"),
            400,
            "VaultNameNotValid",
        ),
        (
            "no api-version",
            Method::GET,
            vault.clone(),
            String::new(),
            400,
            "MissingApiVersionParameter",
        ),
        (
            "bad api-version",
            Method::GET,
            vault.clone(),
            "api-version=latest".into(),
            400,
            "InvalidApiVersionParameter",
        ),
        (
            "unknown subscription",
            Method::GET,
            format!(
                "/subscriptions/{}/providers/Microsoft.KeyVault/deletedVaults",
                "00000000-0000-0000-0000-000000000000"
            ),
            API.into(),
            403,
            "AuthorizationFailed",
        ),
        (
            "deleted invalid name",
            Method::GET,
            format!("{deleted}/x"),
            API.into(),
            400,
            "VaultNameNotValid",
        ),
        (
            "deleted invalid location",
            Method::GET,
            format!(
                "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/west%2Feu/deletedVaults/target"
            ),
            API.into(),
            400,
            "BadRequest",
        ),
        (
            "deleted missing",
            Method::GET,
            format!("{deleted}/target"),
            API.into(),
            404,
            "ResourceNotFound",
        ),
        (
            "purge invalid name",
            Method::POST,
            format!("{deleted}/9nine/purge"),
            API.into(),
            400,
            "VaultNameNotValid",
        ),
        (
            "purge missing",
            Method::POST,
            format!("{deleted}/absent/purge"),
            API.into(),
            404,
            "ResourceNotFound",
        ),
        (
            "purge GET",
            Method::GET,
            format!("{deleted}/absent/purge"),
            API.into(),
            405,
            "MethodNotAllowed",
        ),
        (
            "vault POST",
            Method::POST,
            vault.clone(),
            API.into(),
            405,
            "MethodNotAllowed",
        ),
        (
            "lock list bad filter",
            Method::GET,
            rg_locks.clone(),
            format!("{LOCKS_API}&$filter=level%20eq%20%27x%27"),
            400,
            "BadRequest",
        ),
        (
            "lock GET missing",
            Method::GET,
            format!("{rg_locks}/absent"),
            LOCKS_API.into(),
            404,
            "LockNotFound",
        ),
        (
            "lock GET invalid name",
            Method::GET,
            format!("{rg_locks}/a%3Fb"),
            LOCKS_API.into(),
            400,
            "BadRequest",
        ),
        (
            "lock DELETE invalid name",
            Method::DELETE,
            format!("{rg_locks}/a%26b"),
            LOCKS_API.into(),
            400,
            "BadRequest",
        ),
        (
            "lock on a missing vault",
            Method::GET,
            sdk_vault_locks.replace("target", "absent"),
            LOCKS_API.into(),
            404,
            "ResourceNotFound",
        ),
        (
            "lock PATCH",
            Method::PATCH,
            format!("{rg_locks}/l1"),
            LOCKS_API.into(),
            405,
            "MethodNotAllowed",
        ),
    ];
    for (what, method, path, query, status, code) in query_cases {
        let (s, b) = m
            .send(Some(&m.token), method, m.url(&path, &query), None)
            .await;
        assert_arm_error(what, s, &b, status, code);
    }

    // No or bad token: 401 in ARM's shape, on reads and writes alike.
    // (The last token is for the vaults' data plane: the wrong audience here.)
    let data_plane_token = server.admin_token().await;
    for (token, method, body) in [
        (None, Method::GET, None),
        (Some("not-a-jwt"), Method::PUT, Some(valid_vault.clone())),
        (Some(data_plane_token.as_str()), Method::GET, None),
    ] {
        let (s, b) = m.send(token, method, m.url(&vault, API), body).await;
        assert_arm_error("unauthenticated", s, &b, 401, "AuthenticationFailed");
    }

    // Nothing above changed the vault, and no lock was made.
    let (s, v) = m.call(Method::GET, &vault, None).await;
    assert_eq!(s, 200);
    assert_eq!(v["properties"]["softDeleteRetentionInDays"], 90);
    let (s, l) = m.call(Method::GET, &rg_locks, None).await;
    assert_eq!((s, l["value"].as_array().unwrap().len()), (200, 0), "{l}");
}

#[tokio::test]
async fn lock_changes_and_refusals_are_audited_in_their_chains() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let m = Mgmt::new(&server).await;
    m.create("audited", "held", json!({})).await;
    let vault_locks = format!(
        "{}/providers/Microsoft.Authorization/locks/pin",
        m.vault_path("audited", "held")
    );
    let group_lock = format!(
        "/subscriptions/{}/resourceGroups/audited/providers/Microsoft.Authorization/locks/keep",
        m.sub
    );
    for path in [&vault_locks, &group_lock] {
        let (s, b) = m
            .call(
                Method::PUT,
                path,
                Some(json!({"properties": {"level": "CanNotDelete"}})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    // A principal without a role may not remove a lock: refused, and audited as such.
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = cli(&["sp", "create", "--data-dir", d, "--name", "nobody"]);
    assert_eq!(code, 0, "{err}");
    let nobody: Value = serde_json::from_str(&out).unwrap();
    let nobody_token = mgmt_token(
        &server,
        nobody["client_id"].as_str().unwrap(),
        nobody["client_secret"].as_str().unwrap(),
    )
    .await;
    let (s, b) = m
        .send(
            Some(&nobody_token),
            Method::DELETE,
            m.url(&vault_locks, LOCKS_API),
            None,
        )
        .await;
    assert_arm_error("delete by nobody", s, &b, 403, "AuthorizationFailed");
    let (s, b) = m
        .call(Method::DELETE, &m.vault_path("audited", "held"), None)
        .await;
    assert_arm_error("delete of a locked vault", s, &b, 409, "ScopeLocked");

    // Requests naming a subscription that does not exist share one chain: made-up ids in
    // paths cannot multiply chains.
    let ghost = "/subscriptions/ghost-0001/providers/Microsoft.KeyVault/deletedVaults";
    let (s, _) = m.send(None, Method::GET, m.url(ghost, API), None).await;
    assert_eq!(s, 401);

    for path in [&vault_locks, &group_lock] {
        let (s, _) = m.call(Method::DELETE, path, None).await;
        assert_eq!(s, 200);
        let (s, _) = m.call(Method::DELETE, path, None).await;
        assert_eq!(s, 204, "deleting a missing lock is a no-op");
    }

    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{d}/strongbox.db"))
        .await
        .unwrap();
    let vault = store.get_vault_by_name("held").await.unwrap().unwrap();
    let records = |rows: Vec<strongbox_store::AuditRow>| {
        rows.into_iter()
            .map(|r| serde_json::from_str::<Value>(&r.entry.record_json).unwrap())
            .collect::<Vec<_>>()
    };
    let vault_chain = records(store.read_audit(&vault.id, 0, 1000).await.unwrap());
    let ops: Vec<(String, u64)> = vault_chain
        .iter()
        .map(|r| {
            (
                r["operationName"].as_str().unwrap().to_string(),
                r["properties"]["httpStatusCode"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("Microsoft.KeyVault/vaults/write", 201),
        ("Microsoft.Authorization/locks/write", 201),
        ("Microsoft.Authorization/locks/delete", 403),
        ("Microsoft.KeyVault/vaults/delete", 409),
        ("Microsoft.Authorization/locks/delete", 200),
        ("Microsoft.Authorization/locks/delete", 204),
    ];
    assert_eq!(
        ops,
        expect.map(|(o, s)| (o.to_string(), s)).to_vec(),
        "{vault_chain:#?}"
    );
    let removal = &vault_chain[4];
    assert_eq!(removal["resourceId"], vault_locks.as_str());
    assert_eq!(removal["resultType"], "Success");
    assert_eq!(removal["identity"]["claim"]["oid"], m.admin_oid.as_str());
    let refused = &vault_chain[2];
    assert_eq!(refused["resultType"], "Failure");
    assert_eq!(
        refused["identity"]["claim"]["oid"],
        nobody["object_id"].as_str().unwrap()
    );

    let sub_chain = format!("subscription:{}", m.sub);
    let group_ops: Vec<String> = records(store.read_audit(&sub_chain, 0, 1000).await.unwrap())
        .iter()
        .filter(|r| r["resourceId"] == group_lock.as_str())
        .map(|r| {
            format!(
                "{} {}",
                r["operationName"].as_str().unwrap(),
                r["resultType"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        group_ops,
        [
            "Microsoft.Authorization/locks/write Success",
            "Microsoft.Authorization/locks/delete Success",
            "Microsoft.Authorization/locks/delete Success",
        ]
    );
    assert_eq!(
        store.audit_head("subscription:ghost-0001").await.unwrap(),
        None
    );
    let unknown = records(
        store
            .read_audit("subscription:unknown", 0, 10)
            .await
            .unwrap(),
    );
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0]["resourceId"], "/subscriptions/ghost-0001");
    assert_eq!(unknown[0]["properties"]["httpStatusCode"], 401);
    // The chains still verify.
    for chain in [
        vault.id.as_str(),
        sub_chain.as_str(),
        "subscription:unknown",
    ] {
        let mut v = strongbox_store::chain::Verifier::default();
        for row in store.read_audit(chain, 0, 1000).await.unwrap() {
            v.push(&row).unwrap();
        }
        v.finish(store.audit_head(chain).await.unwrap()).unwrap();
    }
}

/// Polls until `f` is true (the sweeper runs every second here), for at most 20 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn deleted_vaults_are_purged_when_the_clock_passes_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--dev-clock", "--purge-interval-secs", "1"]).await;
    let m = Mgmt::new(&server).await;
    m.create(
        "sweep",
        "shortlived",
        json!({"softDeleteRetentionInDays": 7}),
    )
    .await;
    m.create(
        "sweep",
        "protected",
        json!({"softDeleteRetentionInDays": 8, "enablePurgeProtection": true}),
    )
    .await;

    // A secret in the short-lived vault, through the data plane.
    let data = data_client(&server, &["shortlived"]);
    let vault_token = server.admin_token().await;
    let secret_url = format!(
        "https://shortlived.vault.localhost:{}/secrets/db?api-version=7.6",
        server.port
    );
    let resp = data
        .put(&secret_url)
        .bearer_auth(&vault_token)
        .json(&json!({"value": "s3cret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    for name in ["shortlived", "protected"] {
        let (s, b) = m
            .call(Method::DELETE, &m.vault_path("sweep", name), None)
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let resp = data
        .get(&secret_url)
        .bearer_auth(&vault_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "a deleted vault's secrets stop answering"
    );

    // Tokens live an hour: each look after moving the clock takes a fresh one.
    let deleted_names = || async {
        let m = Mgmt::new(&server).await;
        let (s, b) = m
            .call(
                Method::GET,
                &format!(
                    "/subscriptions/{}/providers/Microsoft.KeyVault/deletedVaults",
                    m.sub
                ),
                None,
            )
            .await;
        assert_eq!(s, 200);
        b["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let advance = |secs: i64| {
        let c = server.client.clone();
        let url = format!(
            "https://localhost:{}/_dev/clock?advance_secs={secs}",
            server.port
        );
        async move {
            assert_eq!(c.post(url).send().await.unwrap().status(), 200);
        }
    };

    // Two minutes short of seven days (the real clock moves too): both stay, through several
    // sweeps. The exact boundary is the domain test's, with a manual clock.
    advance(7 * 86_400 - 120).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(deleted_names().await, ["protected", "shortlived"]);

    // Past seven days the short-lived one goes; purge protection does not stop retention.
    advance(130).await;
    eventually("the 7-day vault to be purged", || async {
        deleted_names().await == ["protected"]
    })
    .await;
    advance(86_400).await;
    eventually("the protected vault to be purged", || async {
        deleted_names().await.is_empty()
    })
    .await;

    // The names are free again and the new vault starts empty.
    let m = Mgmt::new(&server).await;
    let vault_token = server.admin_token().await;
    m.create("elsewhere", "shortlived", json!({})).await;
    let resp = data
        .get(&secret_url)
        .bearer_auth(&vault_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SecretNotFound");

    // The purge was the server's own act, recorded in the vault's chain.
    let d = dir.path().to_str().unwrap();
    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{d}/strongbox.db"))
        .await
        .unwrap();
    // The purged vaults' chains outlive them; find them through the chain heads.
    let chains = sqlx::query_scalar::<_, String>("SELECT vault_id FROM audit_heads")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut purges = vec![];
    for chain in chains {
        for r in store.read_audit(&chain, 0, 1000).await.unwrap() {
            let rec: Value = serde_json::from_str(&r.entry.record_json).unwrap();
            if rec["operationName"] == "Microsoft.KeyVault/locations/deletedVaults/purge/action" {
                purges.push(rec);
            }
        }
    }
    assert_eq!(purges.len(), 2, "{purges:#?}");
    assert!(
        purges
            .iter()
            .all(|p| p["identity"].is_null() && p["resultType"] == "Success")
    );
}

/// The scope form of a lock path: the whole scope percent-encoded into one segment, as
/// azure-mgmt-resource-locks' `*_by_scope` calls send it.
fn scope_locks(scope: &str) -> String {
    format!(
        "/{}/providers/Microsoft.Authorization/locks",
        scope.replace('/', "%2F")
    )
}

#[tokio::test]
async fn subscription_and_scope_lock_paths_refuse_bad_input_in_arm_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let m = Mgmt::new(&server).await;
    m.create("rg", "target", json!({})).await;
    let sub = m.sub.clone();
    let sub_locks = format!("/subscriptions/{sub}/providers/Microsoft.Authorization/locks");
    let rg_scope = format!("/subscriptions/{sub}/resourceGroups/rg");
    let rg_scope_locks = scope_locks(&rg_scope);
    let vault_scope_locks = scope_locks(&m.vault_path("rg", "target"));
    let oversized = format!(
        "{{\"properties\":{{\"level\":\"ReadOnly\",\"notes\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );

    // (what, method, path, body, status, code)
    let body_cases: Vec<(&str, Method, String, String, u16, &str)> = vec![
        (
            "subscription lock malformed",
            Method::PUT,
            format!("{sub_locks}/l1"),
            "{\"properties\":".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "subscription lock unknown field",
            Method::PUT,
            format!("{sub_locks}/l1"),
            json!({"properties": {"level": "ReadOnly", "colour": MARKER}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "subscription lock wrong type",
            Method::PUT,
            format!("{sub_locks}/l1"),
            json!({"properties": {"level": ["ReadOnly"]}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "subscription lock bad level",
            Method::PUT,
            format!("{sub_locks}/l1"),
            json!({"properties": {"level": MARKER}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "subscription lock oversized",
            Method::PUT,
            format!("{sub_locks}/l1"),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "subscription lock invalid name",
            Method::PUT,
            format!("{sub_locks}/a%3Eb"),
            json!({"properties": {"level": "ReadOnly"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "scope lock malformed",
            Method::PUT,
            format!("{rg_scope_locks}/l1"),
            "[".into(),
            400,
            "InvalidRequestContent",
        ),
        (
            "scope lock unknown field",
            Method::PUT,
            format!("{vault_scope_locks}/l1"),
            json!({"properties": {"level": "ReadOnly"}, "secret": MARKER}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "scope lock wrong type",
            Method::PUT,
            format!("{rg_scope_locks}/l1"),
            json!({"properties": {"level": "ReadOnly", "notes": 7}}).to_string(),
            400,
            "InvalidRequestContent",
        ),
        (
            "scope lock oversized",
            Method::PUT,
            format!("{rg_scope_locks}/l1"),
            oversized.clone(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "scope lock invalid name",
            Method::PUT,
            format!("{rg_scope_locks}/a%25b"),
            json!({"properties": {"level": "ReadOnly"}}).to_string(),
            400,
            "BadRequest",
        ),
        (
            "scope lock on an unknown scope form",
            Method::PUT,
            format!(
                "{}/l1",
                scope_locks("/providers/Microsoft.Management/managementGroups/mg")
            ),
            json!({"properties": {"level": "ReadOnly"}}).to_string(),
            400,
            "BadRequest",
        ),
    ];
    for (what, method, path, body, status, code) in body_cases {
        let (s, b) = m
            .send(Some(&m.token), method, m.url(&path, LOCKS_API), Some(body))
            .await;
        assert_arm_error(what, s, &b, status, code);
    }

    let query_cases: Vec<(&str, Method, String, String, u16, &str)> = vec![
        (
            "subscription list bad filter",
            Method::GET,
            sub_locks.clone(),
            format!("{LOCKS_API}&$filter=name%20eq%20%27x%27"),
            400,
            "BadRequest",
        ),
        (
            "subscription list bad level filter",
            Method::GET,
            sub_locks.clone(),
            format!("{LOCKS_API}&$filter=level%20eq%20%27Frozen%27"),
            400,
            "BadRequest",
        ),
        (
            "scope list unquoted level filter",
            Method::GET,
            rg_scope_locks.clone(),
            format!("{LOCKS_API}&$filter=level%20eq%20ReadOnly"),
            400,
            "BadRequest",
        ),
        (
            "scope list repeated atScope",
            Method::GET,
            rg_scope_locks.clone(),
            format!("{LOCKS_API}&$filter=atScope()%20and%20atScope()"),
            400,
            "BadRequest",
        ),
        (
            "subscription lock GET missing",
            Method::GET,
            format!("{sub_locks}/absent"),
            LOCKS_API.into(),
            404,
            "LockNotFound",
        ),
        (
            // RBAC answers first: no role reaches a subscription we do not have.
            "subscription lock unknown subscription",
            Method::GET,
            "/subscriptions/ghost-0002/providers/Microsoft.Authorization/locks".into(),
            LOCKS_API.into(),
            403,
            "AuthorizationFailed",
        ),
        (
            "subscription lock PATCH",
            Method::PATCH,
            format!("{sub_locks}/l1"),
            LOCKS_API.into(),
            405,
            "MethodNotAllowed",
        ),
        (
            "subscription list POST",
            Method::POST,
            sub_locks.clone(),
            LOCKS_API.into(),
            405,
            "MethodNotAllowed",
        ),
        (
            "subscription lock no api-version",
            Method::GET,
            sub_locks.clone(),
            String::new(),
            400,
            "MissingApiVersionParameter",
        ),
        (
            "scope lock no api-version",
            Method::GET,
            rg_scope_locks.clone(),
            String::new(),
            400,
            "MissingApiVersionParameter",
        ),
        (
            "scope list PUT",
            Method::PUT,
            rg_scope_locks.clone(),
            LOCKS_API.into(),
            405,
            "MethodNotAllowed",
        ),
        (
            "scope lock PATCH",
            Method::PATCH,
            format!("{rg_scope_locks}/l1"),
            LOCKS_API.into(),
            405,
            "MethodNotAllowed",
        ),
        (
            "scope of another resource type",
            Method::GET,
            scope_locks(&format!(
                "{rg_scope}/providers/Microsoft.Storage/storageAccounts/acct"
            )),
            LOCKS_API.into(),
            404,
            "ResourceNotFound",
        ),
        (
            "scope of a missing vault",
            Method::GET,
            format!("{}/l1", scope_locks(&m.vault_path("rg", "absent"))),
            LOCKS_API.into(),
            404,
            "ResourceNotFound",
        ),
        (
            "scope with an invalid vault name",
            Method::GET,
            scope_locks(&m.vault_path("rg", "a")),
            LOCKS_API.into(),
            400,
            "VaultNameNotValid",
        ),
        (
            "scope with an invalid group name",
            Method::GET,
            scope_locks(&format!("/subscriptions/{sub}/resourceGroups/a*b")),
            LOCKS_API.into(),
            400,
            "BadRequest",
        ),
        (
            "scope of an unknown subscription",
            Method::DELETE,
            format!("{}/l1", scope_locks("/subscriptions/ghost-0003")),
            LOCKS_API.into(),
            403,
            "AuthorizationFailed",
        ),
        (
            "scope that is no ARM id",
            Method::GET,
            scope_locks("/tenants/x"),
            LOCKS_API.into(),
            400,
            "BadRequest",
        ),
        (
            "scope with a trailing segment",
            Method::GET,
            scope_locks(&format!("{rg_scope}/extra")),
            LOCKS_API.into(),
            400,
            "BadRequest",
        ),
    ];
    for (what, method, path, query, status, code) in query_cases {
        let (s, b) = m
            .send(Some(&m.token), method, m.url(&path, &query), None)
            .await;
        assert_arm_error(what, s, &b, status, code);
    }

    // No token: 401 before anything about the scope is said, valid or not.
    for path in [
        sub_locks.clone(),
        rg_scope_locks.clone(),
        scope_locks("/tenants/x"),
    ] {
        let (s, b) = m
            .send(None, Method::GET, m.url(&path, LOCKS_API), None)
            .await;
        assert_arm_error("unauthenticated", s, &b, 401, "AuthenticationFailed");
    }

    // Nothing above made a lock.
    let (s, l) = m.call(Method::GET, &sub_locks, None).await;
    assert_eq!((s, l["value"].as_array().unwrap().len()), (200, 0), "{l}");
}

#[tokio::test]
async fn a_subscription_lock_holds_every_group_and_vault_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let m = Mgmt::new(&server).await;
    m.create("east", "held-east", json!({})).await;
    m.create("west", "held-west", json!({})).await;
    let sub_scope = format!("/subscriptions/{}", m.sub);
    let lock = format!("{sub_scope}/providers/Microsoft.Authorization/locks/Keep-All");

    // Created through the scope form, read back through the subscription form.
    let (s, b) = m
        .call(
            Method::PUT,
            &format!("{}/Keep-All", scope_locks(&sub_scope)),
            Some(json!({"properties": {"level": "CanNotDelete", "notes": "whole subscription"}})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["id"], lock.as_str());
    let (s, got) = m.call(Method::GET, &lock, None).await;
    assert_eq!((s, &got), (200, &b));

    for (rg, name) in [("east", "held-east"), ("west", "held-west")] {
        let (s, b) = m.call(Method::DELETE, &m.vault_path(rg, name), None).await;
        assert_arm_error(
            "delete under a subscription lock",
            s,
            &b,
            409,
            "ScopeLocked",
        );
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("locked: '{sub_scope}'")) && msg.contains("'Keep-All'"),
            "{msg}"
        );
    }
    // CanNotDelete lets changes through; ReadOnly does not, nor new vaults in any group.
    let (s, b) = m
        .call(
            Method::PATCH,
            &m.vault_path("east", "held-east"),
            Some(json!({"tags": {"k": "v"}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = m
        .call(
            Method::PUT,
            &lock,
            Some(json!({"properties": {"level": "ReadOnly"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = m
        .call(
            Method::PATCH,
            &m.vault_path("west", "held-west"),
            Some(json!({"tags": {"k": "v"}})),
        )
        .await;
    assert_arm_error(
        "update under a ReadOnly subscription lock",
        s,
        &b,
        409,
        "ScopeLocked",
    );
    let (s, b) = m
        .call(
            Method::PUT,
            &m.vault_path("fresh", "newvault"),
            Some(m.vault_body(json!({}))),
        )
        .await;
    assert_arm_error(
        "create under a ReadOnly subscription lock",
        s,
        &b,
        409,
        "ScopeLocked",
    );

    // The level filter, and every lock in the subscription in its list.
    let (s, _) = m
        .call(
            Method::PUT,
            &format!("{sub_scope}/resourceGroups/west/providers/Microsoft.Authorization/locks/g"),
            Some(json!({"properties": {"level": "CanNotDelete"}})),
        )
        .await;
    assert_eq!(s, 201);
    let names = |v: &Value| -> Vec<String> {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mr = &m;
    let list = |filter: &'static str| {
        let url = mr.url(
            &format!("{sub_scope}/providers/Microsoft.Authorization/locks"),
            &format!("{LOCKS_API}{filter}"),
        );
        async move { mr.send(Some(&mr.token), Method::GET, url, None).await }
    };
    let (s, all) = list("").await;
    assert_eq!((s, names(&all)), (200, vec!["Keep-All".into(), "g".into()]));
    let (_, ro) = list("&$filter=level%20eq%20%27readonly%27").await;
    assert_eq!(names(&ro), ["Keep-All"]);
    let (_, cnd) = list("&$filter=level%20eq%20%27CanNotDelete%27").await;
    assert_eq!(names(&cnd), ["g"]);
    let (_, here) = list("&$filter=atScope()%20and%20level%20eq%20%27ReadOnly%27").await;
    assert_eq!(names(&here), ["Keep-All"]);

    // A principal without a role may not touch it; a refused scope form is audited too.
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = cli(&["sp", "create", "--data-dir", d, "--name", "nobody"]);
    assert_eq!(code, 0, "{err}");
    let nobody: Value = serde_json::from_str(&out).unwrap();
    let nobody_token = mgmt_token(
        &server,
        nobody["client_id"].as_str().unwrap(),
        nobody["client_secret"].as_str().unwrap(),
    )
    .await;
    let (s, b) = m
        .send(
            Some(&nobody_token),
            Method::DELETE,
            m.url(&lock, LOCKS_API),
            None,
        )
        .await;
    assert_arm_error("delete by nobody", s, &b, 403, "AuthorizationFailed");
    let bad_scope = scope_locks(&format!("{sub_scope}/resourceGroups/west/oops"));
    let (s, b) = m.call(Method::GET, &bad_scope, None).await;
    assert_arm_error("bad scope", s, &b, 400, "BadRequest");

    for path in [
        lock.clone(),
        format!("{sub_scope}/resourceGroups/west/providers/Microsoft.Authorization/locks/g"),
    ] {
        let (s, _) = m.call(Method::DELETE, &path, None).await;
        assert_eq!(s, 200);
    }
    for (rg, name) in [("east", "held-east"), ("west", "held-west")] {
        let (s, b) = m.call(Method::DELETE, &m.vault_path(rg, name), None).await;
        assert_eq!(s, 200, "{b}");
    }

    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{d}/strongbox.db"))
        .await
        .unwrap();
    let sub_chain = format!("subscription:{}", m.sub);
    let records: Vec<Value> = store
        .read_audit(&sub_chain, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.entry.record_json).unwrap())
        .collect();
    let lock_ops: Vec<(String, String, u64)> = records
        .iter()
        .filter(|r| {
            r["operationName"]
                .as_str()
                .unwrap()
                .starts_with("Microsoft.Authorization/locks")
                && r["resourceId"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{sub_scope}/providers/"))
        })
        .map(|r| {
            (
                r["operationName"].as_str().unwrap().to_string(),
                r["resourceId"].as_str().unwrap().to_string(),
                r["properties"]["httpStatusCode"].as_u64().unwrap(),
            )
        })
        .collect();
    let sub_list = format!("{sub_scope}/providers/Microsoft.Authorization/locks");
    let write = "Microsoft.Authorization/locks/write";
    let read = "Microsoft.Authorization/locks/read";
    let delete = "Microsoft.Authorization/locks/delete";
    let expect: Vec<(&str, &str, u64)> = vec![
        (write, &lock, 201),
        (read, &lock, 200),
        (write, &lock, 200),
        (read, &sub_list, 200),
        (read, &sub_list, 200),
        (read, &sub_list, 200),
        (read, &sub_list, 200),
        (delete, &lock, 403),
        (delete, &lock, 200),
    ];
    assert_eq!(
        lock_ops,
        expect
            .into_iter()
            .map(|(o, r, s)| (o.to_string(), r.to_string(), s))
            .collect::<Vec<_>>()
    );
    // The refused scope form joined the subscription's chain, under the path it named.
    let refused = records
        .iter()
        .find(|r| r["properties"]["httpStatusCode"] == 400)
        .expect("the bad scope is audited");
    assert_eq!(refused["resultType"], "Failure");
    assert_eq!(
        refused["resourceId"],
        format!("{sub_scope}/resourceGroups/west/oops/providers/Microsoft.Authorization/locks")
    );
    // Each vault's chain has its refused delete under the subscription lock, then the delete.
    for name in ["held-east", "held-west"] {
        let vault = store.get_vault_by_name(name).await.unwrap().unwrap();
        let statuses: Vec<u64> = store
            .read_audit(&vault.id, 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.entry.record_json).unwrap())
            .filter(|r| r["operationName"] == "Microsoft.KeyVault/vaults/delete")
            .map(|r| r["properties"]["httpStatusCode"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [409, 200], "{name}");
    }
    let mut v = strongbox_store::chain::Verifier::default();
    for row in store.read_audit(&sub_chain, 0, 1000).await.unwrap() {
        v.push(&row).unwrap();
    }
    v.finish(store.audit_head(&sub_chain).await.unwrap())
        .unwrap();
}
