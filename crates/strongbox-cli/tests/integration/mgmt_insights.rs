//! Bad input and refusals on the storage account, diagnostic setting and audit endpoints: every
//! one a 4xx in ARM's error shape that quotes no value, and every request (allowed, refused,
//! unauthenticated) leaves an audit record.

use crate::cli_support::*;
use crate::common::*;
use reqwest::Method;
use serde_json::Value;

const DIAG: &str = "api-version=2021-05-01-preview";
const STORAGE: &str = "api-version=2024-01-01";

#[track_caller]
fn arm_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_arm_errors_and_every_request_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let sb = Sb::new(dir.path());
    let admin = admin_mgmt_token(&server).await;
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rg = format!("/subscriptions/{sub}/resourceGroups/strongbox-dev");
    let account =
        |name: &str| format!("{rg}/providers/Microsoft.Storage/storageAccounts/{name}?{STORAGE}");
    let vault = vault_id(&server, "dev");
    let setting = |name: &str| {
        format!("{vault}/providers/Microsoft.Insights/diagnosticSettings/{name}?{DIAG}")
    };
    let put = |path: String, body: &'static str| {
        let (server, admin) = (&server, admin.clone());
        async move { mgmt(server, &admin, Method::PUT, &path, Some(body)).await }
    };

    // Storage accounts.
    let ok = put(
        account("logs"),
        r#"{"location":"local","properties":{"maxFileBytes":4096}}"#,
    )
    .await;
    assert_eq!(ok.0, 201, "{}", ok.1);
    assert_eq!(ok.1["properties"]["maxFileBytes"], 4096);
    assert_eq!(put(account("logs"), r#"{"location":"local"}"#).await.0, 200);
    arm_error(
        &put(account("Bad_Name"), r#"{"location":"local"}"#).await,
        400,
        "BadRequest",
    );
    arm_error(
        &put(account("x1"), r#"{"location":"local"}"#).await,
        400,
        "BadRequest",
    );
    arm_error(
        &put(
            account("esc1"),
            r#"{"location":"local","properties":{"localPath":"../x"}}"#,
        )
        .await,
        400,
        "BadRequest",
    );
    arm_error(
        &put(
            account("esc2"),
            r#"{"location":"local","properties":{"localPath":"/etc"}}"#,
        )
        .await,
        400,
        "BadRequest",
    );
    arm_error(
        &put(
            account("tiny"),
            r#"{"location":"local","properties":{"maxFileBytes":10}}"#,
        )
        .await,
        400,
        "BadRequest",
    );
    let unknown = put(
        account("unknownfield"),
        r#"{"location":"local","properties":{"blobEndpoint":"x"}}"#,
    )
    .await;
    arm_error(&unknown, 400, "InvalidRequestContent");
    assert!(
        unknown.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `blobEndpoint`")
    );
    let wrong_type = put(
        account("wrongtype"),
        r#"{"location":"local","properties":{"maxFileBytes":"hunter2-secretish"}}"#,
    )
    .await;
    arm_error(&wrong_type, 400, "InvalidRequestContent");
    assert!(!wrong_type.1.to_string().contains("hunter2"));
    arm_error(
        &put(account("malformed"), r#"{"location":"#).await,
        400,
        "InvalidRequestContent",
    );
    // The same name in another resource group is taken; the directory cannot move.
    let other_rg = format!(
        "/subscriptions/{sub}/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/logs?{STORAGE}"
    );
    arm_error(
        &put(other_rg, r#"{"location":"local"}"#).await,
        409,
        "StorageAccountAlreadyTaken",
    );
    arm_error(
        &put(
            account("logs"),
            r#"{"location":"local","properties":{"localPath":"elsewhere"}}"#,
        )
        .await,
        409,
        "PropertyChangeNotAllowed",
    );
    arm_error(
        &mgmt(
            &server,
            &admin,
            Method::GET,
            &account("logs").replace(STORAGE, ""),
            None,
        )
        .await,
        400,
        "MissingApiVersionParameter",
    );
    arm_error(
        &mgmt(&server, &admin, Method::GET, &account("nosuch"), None).await,
        404,
        "ResourceNotFound",
    );
    assert_eq!(
        mgmt(&server, &admin, Method::DELETE, &account("nosuch"), None)
            .await
            .0,
        204
    );

    // Diagnostic settings.
    let good = format!(
        r#"{{"properties":{{"storageAccountId":"{rg}/providers/Microsoft.Storage/storageAccounts/logs","logs":[{{"category":"AuditEvent","enabled":true,"retentionPolicy":{{"enabled":false,"days":0}}}}],"metrics":[{{"category":"AllMetrics","enabled":false}}]}}}}"#
    );
    let created = mgmt(&server, &admin, Method::PUT, &setting("s1"), Some(&good)).await;
    assert_eq!(created.0, 200, "{}", created.1);
    assert_eq!(created.1["type"], "Microsoft.Insights/diagnosticSettings");
    assert_eq!(created.1["properties"]["logs"][0]["category"], "AuditEvent");
    for (body, code) in [
        (
            r#"{"properties":{"logs":[{"category":"AuditEvent","enabled":true}],"extra":1}}"#,
            "InvalidRequestContent",
        ),
        (
            r#"{"properties":{"logs":[{"category":"AuditEvent","enabled":"yes-secretish"}]}}"#,
            "InvalidRequestContent",
        ),
        (
            r#"{"properties":{"logs":[{"category":"NoSuchCategory","enabled":true}]}}"#,
            "BadRequest",
        ),
        (
            r#"{"properties":{"logs":[{"category":"AuditEvent","categoryGroup":"audit","enabled":true}]}}"#,
            "BadRequest",
        ),
        (
            r#"{"properties":{"workspaceId":"/subscriptions/x/workspaces/y","logs":[]}}"#,
            "BadRequest",
        ),
        (
            r#"{"properties":{"storageAccountId":"/not/an/account","logs":[]}}"#,
            "BadRequest",
        ),
        (
            r#"{"properties":{"storageAccountId":"/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/nosuch","logs":[]}}"#,
            "AuthorizationFailed",
        ),
        (
            r#"{"properties":{"metrics":[{"category":"Other","enabled":true}]}}"#,
            "BadRequest",
        ),
        (r#"{"properties":"#, "InvalidRequestContent"),
        ("", "InvalidRequestContent"),
    ] {
        let got = mgmt(&server, &admin, Method::PUT, &setting("s2"), Some(body)).await;
        let status = if code == "AuthorizationFailed" {
            403
        } else {
            400
        };
        arm_error(&got, status, code);
        assert!(!got.1.to_string().contains("secretish"), "{}", got.1);
    }
    let in_sub = format!(
        r#"{{"properties":{{"storageAccountId":"{rg}/providers/Microsoft.Storage/storageAccounts/nosuch","logs":[]}}}}"#
    );
    arm_error(
        &mgmt(&server, &admin, Method::PUT, &setting("s2"), Some(&in_sub)).await,
        400,
        "BadRequest",
    );
    arm_error(
        &mgmt(
            &server,
            &admin,
            Method::PUT,
            &setting("bad*name"),
            Some(&good),
        )
        .await,
        400,
        "BadRequest",
    );
    arm_error(
        &mgmt(
            &server,
            &admin,
            Method::PUT,
            &setting("s1").replace(DIAG, "api-version=2099-01-01"),
            Some(&good),
        )
        .await,
        400,
        "InvalidApiVersionParameter",
    );
    let big = format!(
        r#"{{"properties":{{"logs":[],"x":"{}"}}}}"#,
        "a".repeat(5 * 1024 * 1024)
    );
    arm_error(
        &mgmt(&server, &admin, Method::PUT, &setting("s3"), Some(&big)).await,
        413,
        "RequestEntityTooLarge",
    );
    let missing_vault = setting("s1").replace("/vaults/dev/", "/vaults/nosuch/");
    arm_error(
        &mgmt(&server, &admin, Method::GET, &missing_vault, None).await,
        404,
        "ResourceNotFound",
    );
    arm_error(
        &mgmt(&server, &admin, Method::GET, &setting("nosuch"), None).await,
        404,
        "ResourceNotFound",
    );
    assert_eq!(
        mgmt(&server, &admin, Method::DELETE, &setting("nosuch"), None)
            .await
            .0,
        204
    );
    // Five settings at most.
    for i in 2..=5 {
        assert_eq!(
            mgmt(
                &server,
                &admin,
                Method::PUT,
                &setting(&format!("n{i}")),
                Some(&good)
            )
            .await
            .0,
            200
        );
    }
    arm_error(
        &mgmt(&server, &admin, Method::PUT, &setting("n6"), Some(&good)).await,
        400,
        "BadRequest",
    );

    // Audit API parameters.
    let events = |q: &str| {
        format!("{vault}/providers/Microsoft.Insights/auditEvents?api-version=2024-01-01{q}")
    };
    let insights = |q: &str| {
        format!("{vault}/providers/Microsoft.Insights/auditInsights?api-version=2024-01-01{q}")
    };
    for q in [
        "&result=Maybe",
        "&from=yesterday",
        "&$top=0",
        "&$top=5000",
        "&$skiptoken=-1",
        "&nope=1",
        "&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        arm_error(
            &mgmt(&server, &admin, Method::GET, &events(q), None).await,
            400,
            "BadRequest",
        );
    }
    for q in [
        "&interval=PT0S",
        "&interval=1h",
        "&interval=PT1S",
        "&$top=5",
    ] {
        arm_error(
            &mgmt(&server, &admin, Method::GET, &insights(q), None).await,
            400,
            "BadRequest",
        );
    }
    let page = mgmt(&server, &admin, Method::GET, &events("&$top=2"), None).await;
    assert_eq!(page.1["value"].as_array().unwrap().len(), 2);
    let next = page.1["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("https://localhost:{}/", server.port))
            && next.contains("skiptoken")
    );

    // A principal without roles is refused everywhere (403), and without a token (401).
    let sp = principal(&sb, "nobody", None);
    let nobody = mgmt_token(
        &server,
        sp["client_id"].as_str().unwrap(),
        sp["client_secret"].as_str().unwrap(),
    )
    .await;
    let nobody_oid = sp["object_id"].as_str().unwrap();
    for (m, path, body) in [
        (Method::GET, setting("s1"), None),
        (Method::PUT, setting("s1"), Some(good.as_str())),
        (Method::DELETE, setting("s1"), None),
        (Method::GET, events(""), None),
        (Method::GET, insights(""), None),
        (Method::GET, account("logs"), None),
        (Method::DELETE, account("logs"), None),
    ] {
        arm_error(
            &mgmt(&server, &nobody, m, &path, body).await,
            403,
            "AuthorizationFailed",
        );
    }
    let anonymous = server
        .client
        .get(format!(
            "https://localhost:{}{}",
            server.port,
            setting("s1")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    arm_error(
        &mgmt(&server, "not-a-token", Method::GET, &events(""), None).await,
        401,
        "AuthenticationFailed",
    );

    // The vault's chain holds every diagnostic-setting and audit request, refusals included.
    let records = sb
        .run(&[
            "audit", "query", "--vault", "dev", "--max", "1000", "-o", "json",
        ])
        .ok()
        .json();
    let records = records.as_array().unwrap();
    let of = |op: &str, status: i64| {
        records
            .iter()
            .filter(|r| r["operationName"] == op && r["properties"]["httpStatusCode"] == status)
            .count()
    };
    assert_eq!(of("Microsoft.Insights/diagnosticSettings/write", 200), 5);
    assert!(of("Microsoft.Insights/diagnosticSettings/write", 400) >= 10);
    assert_eq!(of("Microsoft.Insights/diagnosticSettings/write", 413), 1);
    assert_eq!(of("Microsoft.Insights/diagnosticSettings/delete", 204), 1);
    assert_eq!(of("Microsoft.Insights/logs/read", 401), 1);
    assert_eq!(of("Microsoft.Insights/diagnosticSettings/read", 401), 1);
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["identity"]["claim"]["oid"] == nobody_oid)
        .collect();
    assert_eq!(
        refused.len(),
        5,
        "vault-scoped refusals of the role-less principal"
    );
    assert!(refused.iter().all(|r| r["resultSignature"] == "Forbidden"));
    // No record quotes a body.
    assert!(!records.iter().any(|r| r.to_string().contains("secretish")));
    // Storage account operations go to the subscription's chain, checked offline.
    let out = sb
        .run(&[
            "audit",
            "verify",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .ok();
    assert!(
        out.out.contains("dev: ") && out.out.contains("chain intact"),
        "{}",
        out.out
    );
    drop(server);
}
