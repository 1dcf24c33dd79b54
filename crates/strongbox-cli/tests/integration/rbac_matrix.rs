//! The authorization matrix, end to end on the real binary: every secrets operation × every
//! role (assigned through the role-assignment API) on a vault with enableRbacAuthorization, and
//! × every access-policy permission on a policy-mode vault. Each cell prepares the state its
//! operation needs (so an allowed call must succeed), then expects exactly 2xx or exactly 403
//! with the vault mode's inner code. The expectations are the literal tables below: one row per
//! role or permission, one column per operation.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// The operations, in the columns' order.
const OPS: [&str; 12] = [
    "get",
    "list",
    "list_versions",
    "set",
    "update",
    "delete",
    "get_deleted",
    "list_deleted",
    "recover",
    "purge",
    "backup",
    "restore",
];

/// Where a role is assigned for a row of the RBAC table.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Vault,
    /// At the scope of the one secret each cell works on.
    Secret,
    Nowhere,
}

/// RBAC: (row, role, scope, allowed per OPS column).
#[rustfmt::skip]
const RBAC: &[(&str, &str, At, [u8; 12])] = &[
    //                                                          get lst ver set upd del gdl ldl rec prg bak rst
    ("administrator",  "Key Vault Administrator",   At::Vault,   [1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1]),
    ("officer",        "Key Vault Secrets Officer", At::Vault,   [1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1]),
    ("user",           "Key Vault Secrets User",    At::Vault,   [1,  1,  1,  0,  0,  0,  1,  1,  0,  0,  0,  0]),
    ("reader",         "Key Vault Reader",          At::Vault,   [0,  1,  1,  0,  0,  0,  1,  1,  0,  0,  0,  0]),
    ("owner",          "Owner",                     At::Vault,   [0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0]),
    ("none",           "",                          At::Nowhere, [0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0]),
    ("user-on-secret", "Key Vault Secrets User",    At::Secret,  [1,  0,  1,  0,  0,  0,  1,  0,  0,  0,  0,  0]),
];

/// Access policies: (row, secret permissions, allowed per OPS column).
#[rustfmt::skip]
const POLICIES: &[(&str, &[&str], [u8; 12])] = &[
    //                          get lst ver set upd del gdl ldl rec prg bak rst
    ("get",     &["get"],      [1,  0,  0,  0,  0,  0,  1,  0,  0,  0,  0,  0]),
    ("list",    &["list"],     [0,  1,  1,  0,  0,  0,  0,  1,  0,  0,  0,  0]),
    ("set",     &["set"],      [0,  0,  0,  1,  1,  0,  0,  0,  0,  0,  0,  0]),
    ("delete",  &["delete"],   [0,  0,  0,  0,  0,  1,  0,  0,  0,  0,  0,  0]),
    ("recover", &["recover"],  [0,  0,  0,  0,  0,  0,  0,  0,  1,  0,  0,  0]),
    ("backup",  &["backup"],   [0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  1,  0]),
    ("restore", &["restore"],  [0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  1]),
    ("purge",   &["purge"],    [0,  0,  0,  0,  0,  0,  0,  0,  0,  1,  0,  0]),
    ("none",    &[],           [0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0]),
];

pub(crate) struct Principal {
    pub(crate) object_id: String,
    pub(crate) token: String,
}

/// A data-plane client for `vault` on the test server.
struct Vault {
    name: String,
    base: String,
    http: reqwest::Client,
    admin: String,
}

impl Vault {
    fn new(server: &Server, name: &str, admin: String) -> Vault {
        let ca = std::fs::read(server.creds["ca_cert"].as_str().unwrap()).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let host = format!("{name}.vault.localhost");
        Vault {
            name: name.into(),
            base: format!("https://{host}:{}", server.port),
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .resolve(&host, addr)
                .build()
                .unwrap(),
            admin,
        }
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}?api-version=7.6", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// An admin call that must succeed (cell preparation).
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self
            .call(&self.admin.clone(), method.clone(), path, body)
            .await;
        assert!(
            (200..300).contains(&status),
            "preparing {method} {path} on {}: {status} {v}",
            self.name
        );
        v
    }

    /// Prepares the state `op` needs on secret `name`; returns the request to make.
    async fn prepare(&self, op: &str, name: &str) -> (Method, String, Option<Value>) {
        let set = |v: &str| Some(json!({"value": v}));
        let s = format!("/secrets/{name}");
        let d = format!("/deletedsecrets/{name}");
        match op {
            "get" => {
                self.admin(Method::PUT, &s, set("v")).await;
                (Method::GET, s, None)
            }
            "list" => (Method::GET, "/secrets".into(), None),
            "list_versions" => {
                self.admin(Method::PUT, &s, set("v")).await;
                (Method::GET, format!("{s}/versions"), None)
            }
            "set" => (Method::PUT, s, set("new")),
            "update" => {
                self.admin(Method::PUT, &s, set("v")).await;
                (Method::PATCH, s, Some(json!({"contentType": "text/plain"})))
            }
            "delete" => {
                self.admin(Method::PUT, &s, set("v")).await;
                (Method::DELETE, s, None)
            }
            "get_deleted" | "recover" | "purge" => {
                self.admin(Method::PUT, &s, set("v")).await;
                self.admin(Method::DELETE, &s, None).await;
                match op {
                    "get_deleted" => (Method::GET, d, None),
                    "recover" => (Method::POST, format!("{d}/recover"), None),
                    _ => (Method::DELETE, d, None),
                }
            }
            "list_deleted" => (Method::GET, "/deletedsecrets".into(), None),
            "backup" => {
                self.admin(Method::PUT, &s, set("v")).await;
                (Method::POST, format!("{s}/backup"), None)
            }
            "restore" => {
                self.admin(Method::PUT, &s, set("v")).await;
                let blob = self.admin(Method::POST, &format!("{s}/backup"), None).await;
                self.admin(Method::DELETE, &s, None).await;
                self.admin(Method::DELETE, &d, None).await;
                (
                    Method::POST,
                    "/secrets/restore".into(),
                    Some(json!({"value": blob["value"]})),
                )
            }
            other => unreachable!("unknown op {other}"),
        }
    }
}

/// A management-plane token for the dev admin (Owner of the subscription).
pub(crate) async fn management_token(server: &Server, client_id: &str, secret: &str) -> String {
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
            (
                "scope",
                &format!("https://localhost:{}/.default", server.port),
            ),
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

/// The full id of a built-in role, looked up through the role-definitions API by name.
pub(crate) async fn role_id(server: &Server, token: &str, name: &str) -> String {
    let sub = server.creds["subscription_id"].as_str().unwrap();
    let resp = server
        .client
        .get(format!(
            "https://localhost:{}/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01&$filter=roleName%20eq%20'{}'",
            server.port,
            name.replace(' ', "%20")
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{name}: {v}");
    v["value"][0]["id"].as_str().unwrap().to_string()
}

pub(crate) async fn assign(
    server: &Server,
    token: &str,
    scope: &str,
    role_id: &str,
    principal: &str,
) {
    let resp = server
        .client
        .put(format!(
            "https://localhost:{}{scope}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
            server.port,
            uuid_v4()
        ))
        .bearer_auth(token)
        .json(&json!({"properties": {"roleDefinitionId": role_id, "principalId": principal,
            "principalType": "ServicePrincipal"}}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 201, "{}", resp.text().await.unwrap());
}

pub fn uuid_v4() -> String {
    let h = uuid_like();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub(crate) async fn principal(server: &Server, dir: &std::path::Path, name: &str) -> Principal {
    let (code, out, err) = cli(&[
        "sp",
        "create",
        "--name",
        name,
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    Principal {
        object_id: v["object_id"].as_str().unwrap().into(),
        token: server
            .token_for(
                v["client_id"].as_str().unwrap(),
                v["client_secret"].as_str().unwrap(),
            )
            .await,
    }
}

pub(crate) fn create_vault(dir: &std::path::Path, name: &str, rbac: bool) {
    let mut args = vec![
        "vault",
        "create",
        "--name",
        name,
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    if rbac {
        args.push("--enable-rbac");
    }
    let (code, _, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
}

/// Runs one cell and returns a description of any mismatch.
async fn cell(
    vault: &Vault,
    who: &Principal,
    op: &str,
    secret: &str,
    allowed: bool,
    inner: &str,
) -> Option<String> {
    let (method, path, body) = vault.prepare(op, secret).await;
    let (status, v) = vault.call(&who.token, method.clone(), &path, body).await;
    let ok = if allowed {
        (200..300).contains(&status)
    } else {
        status == 403 && v["error"]["innererror"]["code"] == inner
    };
    (!ok).then(|| {
        format!(
            "{op}: expected {} got {status} {v}",
            if allowed {
                "2xx".to_string()
            } else {
                format!("403 {inner}")
            }
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_by_every_role_and_permission_is_exactly_allowed_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let admin_id = server.creds["client_id"].as_str().unwrap().to_string();
    let admin_secret = server.creds["client_secret"].as_str().unwrap().to_string();
    let mgmt = management_token(&server, &admin_id, &admin_secret).await;
    let admin_data = server.admin_token().await;
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_oid = {
        // The admin's object id, from its own token.
        let payload = admin_data.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };

    // --- RBAC vault: the admin prepares cells as Key Vault Administrator.
    let rbac_name = format!("rbac{}", &uuid_like()[..8]);
    create_vault(dir.path(), &rbac_name, true);
    let vault_scope = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.KeyVault/vaults/{rbac_name}"
    );
    let kv_admin = role_id(&server, &mgmt, "Key Vault Administrator").await;
    assign(&server, &mgmt, &vault_scope, &kv_admin, &admin_oid).await;
    let vault = Vault::new(&server, &rbac_name, admin_data.clone());

    let mut failures = vec![];
    for (row, role, at, expected) in RBAC {
        let who = principal(&server, dir.path(), &format!("rbac-{row}")).await;
        let role_id = if role.is_empty() {
            None
        } else {
            Some(role_id(&server, &mgmt, role).await)
        };
        if *at == At::Vault {
            assign(
                &server,
                &mgmt,
                &vault_scope,
                role_id.as_ref().unwrap(),
                &who.object_id,
            )
            .await;
        }
        for (op, allowed) in OPS.iter().zip(expected) {
            let secret = format!("{row}-{}", op.replace('_', "-"));
            if *at == At::Secret {
                let scope = format!("{vault_scope}/secrets/{secret}");
                assign(
                    &server,
                    &mgmt,
                    &scope,
                    role_id.as_ref().unwrap(),
                    &who.object_id,
                )
                .await;
            }
            if let Some(f) = cell(&vault, &who, op, &secret, *allowed == 1, "ForbiddenByRbac").await
            {
                failures.push(format!("RBAC {row} ({role}): {f}"));
            }
        }
    }

    // --- Policy vault: the admin holds every permission (as on `dev`).
    let policy_name = format!("pol{}", &uuid_like()[..8]);
    create_vault(dir.path(), &policy_name, false);
    let set_policy = |oid: &str, perms: &str| {
        let (code, _, err) = cli(&[
            "policy",
            "set",
            "--vault",
            &policy_name,
            "--object-id",
            oid,
            "--secret-permissions",
            perms,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
    };
    set_policy(&admin_oid, "all");
    let vault = Vault::new(&server, &policy_name, admin_data);
    for (row, perms, expected) in POLICIES {
        let who = principal(&server, dir.path(), &format!("policy-{row}")).await;
        if !perms.is_empty() {
            set_policy(&who.object_id, &perms.join(","));
        }
        for (op, allowed) in OPS.iter().zip(expected) {
            let secret = format!("{row}-{}", op.replace('_', "-"));
            if let Some(f) = cell(&vault, &who, op, &secret, *allowed == 1, "AccessDenied").await {
                failures.push(format!("policy {row}: {f}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
