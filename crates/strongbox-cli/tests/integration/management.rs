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
