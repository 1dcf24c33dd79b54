//! Role assignments, managed identities and managed-identity token endpoints on the real binary:
//! who may assign roles, bad input in ARM's error shape, audit records of every management call
//! (refusals included), the CLIs, and both managed-identity forms at the HTTP level (the Python
//! suite drives them with the unmodified SDK).

use crate::common::*;
use crate::rbac_matrix::uuid_v4;
use reqwest::Method;
use serde_json::{Value, json};

const RA: &str = "providers/Microsoft.Authorization/roleAssignments";

async fn token(server: &Server, client_id: &str, secret: &str) -> String {
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

/// A management call; `path` includes the query.
async fn arm(
    server: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (u16, Value) {
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
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sp(dir: &std::path::Path, name: &str) -> Value {
    let (code, out, err) = cli(&[
        "sp",
        "create",
        "--name",
        name,
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn role(sub: &str, guid: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

fn body(role_id: &str, principal: &str) -> String {
    json!({"properties": {"roleDefinitionId": role_id, "principalId": principal}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_owners_assign_roles_and_every_call_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = token(
        &server,
        server.creds["client_id"].as_str().unwrap(),
        server.creds["client_secret"].as_str().unwrap(),
    )
    .await;
    let vault_scope = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.KeyVault/vaults/dev"
    );
    let v = "?api-version=2022-04-01";

    // A Contributor of the subscription manages resources but may not assign roles.
    let contributor = sp(dir.path(), "contrib");
    let (s, _) = arm(
        &server,
        Some(&admin),
        Method::PUT,
        &format!("/subscriptions/{sub}/{RA}/{}{v}", uuid_v4()),
        Some(body(
            &role(&sub, CONTRIBUTOR),
            contributor["object_id"].as_str().unwrap(),
        )),
    )
    .await;
    assert_eq!(s, 201);
    let contrib_token = token(
        &server,
        contributor["client_id"].as_str().unwrap(),
        contributor["client_secret"].as_str().unwrap(),
    )
    .await;
    let target = sp(dir.path(), "target");
    let target_oid = target["object_id"].as_str().unwrap();
    let (s, e) = arm(
        &server,
        Some(&contrib_token),
        Method::PUT,
        &format!("{vault_scope}/{RA}/{}{v}", uuid_v4()),
        Some(body(&role(&sub, SECRETS_USER), target_oid)),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("AuthorizationFailed")),
        "{e}"
    );
    // It may read them (Contributor has */read).
    let (s, _) = arm(
        &server,
        Some(&contrib_token),
        Method::GET,
        &format!("{vault_scope}/{RA}{v}"),
        None,
    )
    .await;
    assert_eq!(s, 200);

    // An Owner at the vault may assign there, but not at the subscription above it.
    let vault_owner = sp(dir.path(), "vault-owner");
    let (s, _) = arm(
        &server,
        Some(&admin),
        Method::PUT,
        &format!("{vault_scope}/{RA}/{}{v}", uuid_v4()),
        Some(body(
            &role(&sub, OWNER),
            vault_owner["object_id"].as_str().unwrap(),
        )),
    )
    .await;
    assert_eq!(s, 201);
    let owner_token = token(
        &server,
        vault_owner["client_id"].as_str().unwrap(),
        vault_owner["client_secret"].as_str().unwrap(),
    )
    .await;
    let name = uuid_v4();
    let at_vault = format!("{vault_scope}/{RA}/{name}{v}");
    let (s, created) = arm(
        &server,
        Some(&owner_token),
        Method::PUT,
        &at_vault,
        Some(body(&role(&sub, SECRETS_USER), target_oid)),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["properties"]["scope"], vault_scope);
    assert_eq!(created["properties"]["principalId"], target_oid);
    // The same PUT again is idempotent; the same role under another name is a conflict.
    let (s, _) = arm(
        &server,
        Some(&owner_token),
        Method::PUT,
        &at_vault,
        Some(body(&role(&sub, SECRETS_USER), target_oid)),
    )
    .await;
    assert_eq!(s, 200);
    let (s, e) = arm(
        &server,
        Some(&owner_token),
        Method::PUT,
        &format!("{vault_scope}/{RA}/{}{v}", uuid_v4()),
        Some(body(&role(&sub, SECRETS_USER), target_oid)),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("RoleAssignmentExists"))
    );
    let (s, _) = arm(
        &server,
        Some(&owner_token),
        Method::PUT,
        &format!("/subscriptions/{sub}/{RA}/{}{v}", uuid_v4()),
        Some(body(&role(&sub, SECRETS_USER), target_oid)),
    )
    .await;
    assert_eq!(s, 403);

    // Listing: atScope() shows the vault's and the subscription's assignments, a principal
    // filter narrows to one principal.
    let (s, list) = arm(
        &server,
        Some(&admin),
        Method::GET,
        &format!("{vault_scope}/{RA}{v}&$filter=atScope()"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let scopes: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["properties"]["scope"].as_str().unwrap())
        .collect();
    assert!(
        scopes.contains(&vault_scope.as_str())
            && scopes.contains(&format!("/subscriptions/{sub}").as_str())
    );
    let (_, mine) = arm(
        &server,
        Some(&admin),
        Method::GET,
        &format!("/subscriptions/{sub}/{RA}{v}&$filter=principalId%20eq%20'{target_oid}'"),
        None,
    )
    .await;
    assert_eq!(mine["value"].as_array().unwrap().len(), 1, "{mine}");
    // At the subscription with atScope(), the vault's assignments (beneath it) are not listed.
    let (_, top) = arm(&server, Some(&admin), Method::GET,
        &format!("/subscriptions/{sub}/{RA}{v}&$filter=atScope()%20and%20principalId%20eq%20'{target_oid}'"), None).await;
    assert!(top["value"].as_array().unwrap().is_empty(), "{top}");

    // Delete: 200 with the assignment, then 204.
    let (s, gone) = arm(&server, Some(&owner_token), Method::DELETE, &at_vault, None).await;
    assert_eq!((s, gone["name"].as_str()), (200, Some(name.as_str())));
    let (s, _) = arm(&server, Some(&owner_token), Method::DELETE, &at_vault, None).await;
    assert_eq!(s, 204);
    let (s, e) = arm(&server, Some(&owner_token), Method::GET, &at_vault, None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("RoleAssignmentNotFound"))
    );

    // No token: 401 in ARM's shape.
    let (s, e) = arm(
        &server,
        None,
        Method::GET,
        &format!("{vault_scope}/{RA}{v}"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    // A vault-audience token is not a management token.
    let data_token = server.admin_token().await;
    let (s, _) = arm(
        &server,
        Some(&data_token),
        Method::GET,
        &format!("{vault_scope}/{RA}{v}"),
        None,
    )
    .await;
    assert_eq!(s, 401);

    // Bad input: ARM error shape, 4xx, never an echo of the body.
    let leak = "s3cr3t-do-not-echo";
    let ra = |scope: &str| format!("{scope}/{RA}/{}{v}", uuid_v4());
    let principal = target_oid.to_string();
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("missing api-version", format!("{vault_scope}/{RA}/{}", uuid_v4()), Some(body(&role(&sub, SECRETS_USER), &principal)), 400, "MissingApiVersionParameter"),
        ("unknown api-version", format!("{vault_scope}/{RA}/{}?api-version=1999-01-01", uuid_v4()), Some(body(&role(&sub, SECRETS_USER), &principal)), 400, "InvalidApiVersionParameter"),
        ("name not a GUID", format!("{vault_scope}/{RA}/not-a-guid{v}"), Some(body(&role(&sub, SECRETS_USER), &principal)), 400, "InvalidRoleAssignmentId"),
        ("malformed JSON", ra(&vault_scope), Some(format!("{{\"properties\": {{\"x\": \"{leak}\"")), 400, "InvalidRequestContent"),
        ("unknown field", ra(&vault_scope), Some(json!({"properties": {"roleDefinitionId": role(&sub, SECRETS_USER), "principalId": principal, "extra": leak}}).to_string()), 400, "InvalidRequestContent"),
        ("wrong type", ra(&vault_scope), Some(json!({"properties": {"roleDefinitionId": 7, "principalId": principal}}).to_string()), 400, "InvalidRequestContent"),
        ("empty body", ra(&vault_scope), None, 400, "InvalidRequestContent"),
        ("oversized body", ra(&vault_scope), Some(format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000))), 413, "RequestEntityTooLarge"),
        ("unknown role", ra(&vault_scope), Some(body(&role(&sub, "00000000-0000-0000-0000-000000000000"), &principal)), 400, "RoleDefinitionDoesNotExist"),
        ("role of another subscription", ra(&vault_scope), Some(body(&role("other", SECRETS_USER), &principal)), 400, "InvalidRoleDefinitionId"),
        ("unknown principal", ra(&vault_scope), Some(body(&role(&sub, SECRETS_USER), "00000000-0000-0000-0000-000000000001")), 400, "PrincipalNotFound"),
        ("condition", ra(&vault_scope), Some(json!({"properties": {"roleDefinitionId": role(&sub, SECRETS_USER), "principalId": principal, "condition": "x"}}).to_string()), 400, "BadRequest"),
        ("user principal type", ra(&vault_scope), Some(json!({"properties": {"roleDefinitionId": role(&sub, SECRETS_USER), "principalId": principal, "principalType": "User"}}).to_string()), 400, "UnmatchedPrincipalType"),
        ("missing vault", ra(&vault_scope.replace("/dev", "/nosuchvault")), Some(body(&role(&sub, SECRETS_USER), &principal)), 404, "ResourceNotFound"),
        ("unsupported resource type", ra(&format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm")), Some(body(&role(&sub, SECRETS_USER), &principal)), 400, "InvalidScope"),
        ("unknown subscription", ra("/subscriptions/00000000-0000-0000-0000-000000000009"), Some(body(&role(&sub, SECRETS_USER), &principal)), 404, "SubscriptionNotFound"),
    ];
    for (what, path, b, status, code) in cases {
        let (s, e) = arm(&server, Some(&admin), Method::PUT, &path, b).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {e}"
        );
        assert!(!e.to_string().contains(leak), "{what} echoed the body");
    }
    let (s, e) = arm(
        &server,
        Some(&admin),
        Method::GET,
        &format!("{vault_scope}/{RA}{v}&$filter=roleName%20eq%20'x'"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("UnsupportedQuery"))
    );

    // Role definitions: the built-in roles, by name filter or GUID.
    let (s, defs) = arm(
        &server,
        Some(&admin),
        Method::GET,
        &format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions{v}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = defs["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["properties"]["roleName"].as_str().unwrap())
        .collect();
    for n in [
        "Owner",
        "Key Vault Administrator",
        "Key Vault Secrets Officer",
        "Key Vault Secrets User",
        "Key Vault Reader",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let (s, one) = arm(
        &server,
        Some(&admin),
        Method::GET,
        &format!(
            "{vault_scope}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}{v}"
        ),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        one["properties"]["permissions"][0]["dataActions"],
        json!([
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
        ])
    );
    server_stop_and_check_audit(server, dir.path(), &sub, leak).await;
}

/// Every management call above left a record: vault-scoped ones on the vault's chain, the rest
/// on the subscription's; refusals as Failure; nothing echoes the body.
async fn server_stop_and_check_audit(
    mut server: Server,
    dir: &std::path::Path,
    sub: &str,
    leak: &str,
) {
    server.stop();
    let store = strongbox_store_sqlite::SqliteStore::open(&format!(
        "sqlite:{}/strongbox.db",
        dir.display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT vault_id, operation, result_type, record_json FROM audit_records ORDER BY vault_id, seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let dev_id: String = sqlx::query_scalar("SELECT id FROM vaults WHERE name = 'dev'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let count = |chain: &str, op: &str, result: &str, status: u16| {
        rows.iter()
            .filter(|(c, o, r, j)| {
                c == chain
                    && o == op
                    && r == result
                    && serde_json::from_str::<Value>(j).unwrap()["properties"]["httpStatusCode"]
                        == status
            })
            .count()
    };
    let sub_chain = format!("subscription:{sub}");
    let write = "Microsoft.Authorization/roleAssignments/write";
    assert!(
        count(&sub_chain, write, "Success", 201) >= 1,
        "the subscription-level assignment"
    );
    assert!(
        count(&dev_id, write, "Success", 201) >= 1,
        "vault-level assignment on the vault chain"
    );
    assert!(
        count(&dev_id, write, "Failure", 403) >= 1,
        "the Contributor's refusal"
    );
    assert!(count(&dev_id, write, "Failure", 409) >= 1);
    assert!(count(&dev_id, write, "Failure", 413) >= 1);
    assert!(
        count(
            &dev_id,
            "Microsoft.Authorization/roleAssignments/read",
            "Failure",
            401
        ) >= 2
    );
    assert!(
        count(
            &dev_id,
            "Microsoft.Authorization/roleAssignments/delete",
            "Success",
            200
        ) == 1
    );
    assert!(count(&sub_chain, write, "Failure", 403) >= 1);
    let refusal: Value = serde_json::from_str(
        &rows
            .iter()
            .find(|(c, o, r, _)| c == &dev_id && o == write && r == "Failure")
            .unwrap()
            .3,
    )
    .unwrap();
    assert_eq!(refusal["category"], "Administrative");
    assert!(refusal["identity"]["claim"]["oid"].is_string());
    assert!(
        rows.iter().all(|(_, _, _, j)| !j.contains(leak)),
        "a request body reached the audit log"
    );
    // The audit chains still verify.
    let (code, out, err) = cli(&["audit", "verify", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_assigned_identities_get_tokens_through_both_endpoint_forms() {
    let dir = tempfile::tempdir().unwrap();
    let arc_dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--arc-token-dir", arc_dir.path().to_str().unwrap()],
    )
    .await;
    let d = dir.path().to_str().unwrap();
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = token(
        &server,
        server.creds["client_id"].as_str().unwrap(),
        server.creds["client_secret"].as_str().unwrap(),
    )
    .await;

    // Create through the ARM API (as azure-mgmt-msi does) and see it from the CLI.
    let id_path = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.ManagedIdentity/userAssignedIdentities/worker?api-version=2024-11-30"
    );
    let (s, created) = arm(
        &server,
        Some(&admin),
        Method::PUT,
        &id_path,
        Some(json!({"location": "local", "tags": {"team": "a"}}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let oid = created["properties"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let client_id = created["properties"]["clientId"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, again) = arm(
        &server,
        Some(&admin),
        Method::PUT,
        &id_path,
        Some(json!({"location": "local"}).to_string()),
    )
    .await;
    assert_eq!(
        (s, again["properties"]["principalId"].as_str()),
        (200, Some(oid.as_str()))
    );
    for (what, b, code) in [
        ("another location", json!({"location": "westeurope"}), 409),
        (
            "unknown field",
            json!({"location": "local", "sku": "x"}),
            400,
        ),
        ("no location", json!({"tags": {}}), 400),
        (
            "regional isolation",
            json!({"location": "local", "properties": {"isolationScope": "Regional"}}),
            400,
        ),
    ] {
        let (s, e) = arm(
            &server,
            Some(&admin),
            Method::PUT,
            &id_path,
            Some(b.to_string()),
        )
        .await;
        assert_eq!(s, code, "{what}: {e}");
    }
    let (s, _) = arm(
        &server,
        Some(&admin),
        Method::PUT,
        &id_path.replace("/worker?", "/x?"),
        Some(json!({"location": "local"}).to_string()),
    )
    .await;
    assert_eq!(s, 400, "a two-letter name is invalid");
    let (code, out, _) = cli(&["identity", "list", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.contains(&oid));

    // Give it Get on the dev vault, then let it read a secret through each form.
    let (code, _, err) = cli(&[
        "policy",
        "set",
        "--vault",
        "dev",
        "--object-id",
        &oid,
        "--secret-permissions",
        "get",
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 0, "{err}");
    let admin_data = server.admin_token().await;
    let (s, _) = server
        .call(
            &admin_data,
            Method::PUT,
            "/secrets/for-mi",
            Some(json!({"value": "mi-value"})),
        )
        .await;
    assert_eq!(s, 200);
    let env = |form: &str| -> Value {
        let (code, out, err) = cli(&[
            "identity",
            "env",
            "--name",
            "worker",
            "--form",
            form,
            "--json",
            "--data-dir",
            d,
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let resource = format!("https://vault.localhost:{}", server.port);

    // App Service: the header names the identity; a selector must match it.
    let app = env("app-service");
    let endpoint = app["IDENTITY_ENDPOINT"].as_str().unwrap();
    let header = app["IDENTITY_HEADER"].as_str().unwrap();
    let get = |url: String, header: Option<&str>| {
        let mut r = server.client.get(url).header("Metadata", "true");
        if let Some(h) = header {
            r = r.header("X-IDENTITY-HEADER", h);
        }
        r
    };
    let q = format!("api-version=2019-08-01&resource={resource}");
    let resp = get(
        format!("{endpoint}?{q}&client_id={client_id}"),
        Some(header),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["client_id"], client_id.as_str());
    assert!(
        t["expires_on"].as_str().unwrap().parse::<i64>().is_ok(),
        "expires_on is epoch seconds as a string"
    );
    let (s, v) = server
        .call(
            t["access_token"].as_str().unwrap(),
            Method::GET,
            "/secrets/for-mi",
            None,
        )
        .await;
    assert_eq!((s, v["value"].as_str()), (200, Some("mi-value")));
    let (s, _) = server
        .call(
            t["access_token"].as_str().unwrap(),
            Method::PUT,
            "/secrets/for-mi",
            Some(json!({"value": "no"})),
        )
        .await;
    assert_eq!(s, 403, "the identity has Get only");
    for (what, url, h, status) in [
        (
            "wrong header",
            format!("{endpoint}?{q}"),
            Some("sbxmi~wrong"),
            401,
        ),
        ("no header", format!("{endpoint}?{q}"), None, 401),
        (
            "other identity",
            format!("{endpoint}?{q}&client_id=00000000-0000-0000-0000-000000000000"),
            Some(header),
            400,
        ),
        (
            "two selectors",
            format!("{endpoint}?{q}&client_id={client_id}&object_id={oid}"),
            Some(header),
            400,
        ),
        (
            "unknown parameter",
            format!("{endpoint}?{q}&bogus=1"),
            Some(header),
            400,
        ),
        (
            "bad api-version",
            format!("{endpoint}?api-version=2017-09-01&resource={resource}"),
            Some(header),
            400,
        ),
        (
            "unknown resource",
            format!("{endpoint}?api-version=2019-08-01&resource=https://example.com"),
            Some(header),
            400,
        ),
    ] {
        let resp = get(url, h).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["statusCode"], status, "{what}: App Service error shape");
        assert!(!e.to_string().contains(header), "{what} echoed the secret");
    }

    // Azure Arc: challenge, then the file's content, once.
    let arc = env("arc");
    let arc_endpoint = arc["IDENTITY_ENDPOINT"].as_str().unwrap().to_string();
    assert!(arc["IMDS_ENDPOINT"].is_string());
    let url =
        format!("{arc_endpoint}?api-version=2020-06-01&resource={resource}&client_id={client_id}");
    let resp = server.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 400, "Metadata: true is required");
    let challenge = || async {
        let resp = server
            .client
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let realm = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        let path = realm.strip_prefix("Basic realm=").unwrap().to_string();
        assert_eq!(realm.split('=').count(), 2, "MSAL splits the header on '='");
        std::path::PathBuf::from(path)
    };
    let file = challenge().await;
    assert_eq!(file.parent().unwrap(), arc_dir.path());
    assert_eq!(file.extension().unwrap(), "key");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let content = std::fs::read_to_string(&file).unwrap();
    assert!(content.len() <= 4096 && !content.ends_with('\n'));
    let redeem = |c: String| {
        server
            .client
            .get(&url)
            .header("Metadata", "true")
            .header("Authorization", format!("Basic {c}"))
            .send()
    };
    let resp = redeem("wrong".into()).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_none());
    let resp = redeem(content.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(
        (t["client_id"].as_str(), t["object_id"].as_str()),
        (Some(client_id.as_str()), Some(oid.as_str()))
    );
    assert!(
        t["msi_res_id"]
            .as_str()
            .unwrap()
            .ends_with("/userAssignedIdentities/worker")
    );
    assert!(t["expires_in"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert!(!file.exists(), "the challenge file is removed once used");
    let resp = redeem(content).await.unwrap();
    assert_eq!(resp.status(), 401, "a challenge is single-use");
    let (s, _) = server
        .call(
            t["access_token"].as_str().unwrap(),
            Method::GET,
            "/secrets/for-mi",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let resp = server
        .client
        .get(format!(
            "https://localhost:{}/msi/arc/nosuch/token?api-version=2020-06-01&resource={resource}",
            server.port
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Deleting the identity ends both forms.
    let (s, _) = arm(&server, Some(&admin), Method::DELETE, &id_path, None).await;
    assert_eq!(s, 200);
    let (s, _) = arm(&server, Some(&admin), Method::DELETE, &id_path, None).await;
    assert_eq!(s, 204);
    let resp = server
        .client
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "the Arc endpoint is gone");
    let resp = get(format!("{endpoint}?{q}"), Some(header))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the App Service secret is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_assigned_identities_live_and_die_with_their_resource_and_the_cli_assigns_roles() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let d = dir.path().to_str().unwrap();
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.Devices/edges/e1"
    );
    let (code, out, err) = cli(&["identity", "create", "--owner", &owner, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["kind"], "SystemAssigned");
    // A resource has one system-assigned identity: creating again returns it.
    let (_, again, _) = cli(&["identity", "create", "--owner", &owner, "--data-dir", d]);
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["principalId"],
        created["principalId"]
    );
    let admin = token(
        &server,
        server.creds["client_id"].as_str().unwrap(),
        server.creds["client_secret"].as_str().unwrap(),
    )
    .await;
    let path = format!(
        "{owner}/providers/Microsoft.ManagedIdentity/identities/default?api-version=2024-11-30"
    );
    let (s, v) = arm(&server, Some(&admin), Method::GET, &path, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["properties"]["principalId"], created["principalId"]);

    // The CLI assigns, lists and deletes roles through the API with the dev credentials.
    let oid = created["principalId"].as_str().unwrap();
    let (code, out, err) = cli(&[
        "role",
        "assign",
        "-o",
        "json",
        "--role",
        "Key Vault Secrets User",
        "--assignee",
        oid,
        "--vault",
        "dev",
        "--secret",
        "only-this",
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 0, "{err}");
    let assigned: Value = serde_json::from_str(&out).unwrap();
    assert!(
        assigned["properties"]["scope"]
            .as_str()
            .unwrap()
            .ends_with("/vaults/dev/secrets/only-this")
    );
    let (code, out, _) = cli(&[
        "role",
        "list",
        "-o",
        "json",
        "--assignee",
        oid,
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (code, _, err) = cli(&[
        "role",
        "assign",
        "--role",
        "No Such Role",
        "--assignee",
        oid,
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("unknown role"));

    // Deleting the resource's identity removes it, with its role assignments.
    let (code, _, err) = cli(&["identity", "delete", "--owner", &owner, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let (s, _) = arm(&server, Some(&admin), Method::GET, &path, None).await;
    assert_eq!(s, 404);
    let (code, out, _) = cli(&[
        "role",
        "list",
        "-o",
        "json",
        "--assignee",
        oid,
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");
    let (code, _, err) = cli(&[
        "role",
        "delete",
        "--id",
        assigned["id"].as_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 4, "already gone with the identity: {err}");
    assert!(err.starts_with("error: RoleAssignmentNotFound: "), "{err}");
}
