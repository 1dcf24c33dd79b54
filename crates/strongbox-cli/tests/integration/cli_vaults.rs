//! The management commands of the real binary against the real server over HTTPS: `vault …`,
//! `policy …`, `lock …` (vault and resource-group level) and `role …`, in table and JSON
//! output, with the README's exit codes and one-line errors, and their effect on what callers
//! may do (the data plane through `secret …`, the management plane through a second principal).

use crate::cli_support::*;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RG: &str = "strongbox-dev";

fn a<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    let mut v = head.to_vec();
    v.extend_from_slice(tail);
    v
}

/// The table's header cells and its rows (cells split on runs of two or more spaces).
fn table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() >= 2
            && lines[1].starts_with('-')
            && lines[1].chars().all(|c| c == '-' || c == ' '),
        "not a table: {out}"
    );
    (
        split(lines[0]),
        lines[2..].iter().map(|l| split(l)).collect(),
    )
}

/// The row whose first cell is `first`.
#[track_caller]
fn row<'a>(rows: &'a [Vec<String>], first: &str) -> &'a Vec<String> {
    rows.iter()
        .find(|r| r.first().is_some_and(|c| c == first))
        .unwrap_or_else(|| panic!("no row {first:?} in {rows:?}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// A second principal, made with `strongbox sp create`, and a credentials file for it.
fn second_principal(sb: &Sb, server: &Server, dir: &Path, name: &str) -> (Value, PathBuf) {
    let sp = sb
        .run(&[
            "sp",
            "create",
            "--data-dir",
            sb.data_dir.to_str().unwrap(),
            "--name",
            name,
        ])
        .ok()
        .json();
    for k in ["tenant_id", "object_id", "client_id", "client_secret"] {
        assert!(sp[k].is_string(), "{k} missing: {sp}");
    }
    let creds = creds_for(server, dir, &sp);
    (sp, creds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_lifecycle_access_policies_and_locks_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--dev-clock", "--purge-interval-secs", "1"]).await;
    let sb = Sb::new(dir.path());
    let admin_oid = oid_of(&server.admin_token().await);
    const V: &str = "cli-vault";
    let vault = ["--vault", V];

    // ---- create / show / list
    let created = sb
        .run(&[
            "vault",
            "create",
            "-n",
            V,
            "--retention-days",
            "7",
            "--tags",
            "env=test",
            "team=core",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(created["name"], V);
    assert_eq!(created["id"], vault_id(&server, V));
    assert_eq!(created["location"], "local");
    assert_eq!(
        created["tags"],
        serde_json::json!({"env": "test", "team": "core"})
    );
    assert_eq!(created["properties"]["softDeleteRetentionInDays"], 7);
    assert_eq!(
        created["properties"]["accessPolicies"],
        serde_json::json!([])
    );
    assert!(created["properties"]["enablePurgeProtection"].is_null());
    assert_eq!(
        created["properties"]["vaultUri"],
        format!("https://{V}.vault.localhost:{}/", server.port)
    );
    // Creating it again would replace it (access policies and all): refused.
    sb.run(&["vault", "create", "-n", V])
        .fails(6, "VaultAlreadyExists");
    sb.run(&["vault", "create", "-n", "no_underscores"])
        .fails(3, "VaultNameNotValid");
    sb.run(&[
        "vault",
        "create",
        "-n",
        "cli-short",
        "--retention-days",
        "3",
    ])
    .fails(3, "BadRequest");
    sb.run(&["vault", "create", "-n", "cli-x", "--tags", "novalue"])
        .fails(2, "Usage");

    let shown = sb.run(&["vault", "show", "-n", V]).ok();
    let (header, rows) = table(&shown.out);
    assert_eq!(
        header,
        [
            "Name",
            "ResourceGroup",
            "Location",
            "RetentionDays",
            "PurgeProtection",
            "Rbac",
            "VaultUri"
        ]
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][..6],
        [V, RG, "local", "7", "False", "False"].map(String::from)
    );
    let shown = sb
        .run(&["vault", "show", "-n", V, "-o", "json"])
        .ok()
        .json();
    assert_eq!(shown, created);
    sb.run(&["vault", "show", "-n", "cli-nosuch"])
        .fails(4, "ResourceNotFound");
    sb.run(&["vault", "show", "-n", V, "-g", "other-group"])
        .fails(4, "ResourceNotFound");

    let (_, rows) = table(&sb.run(&["vault", "list"]).ok().out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    row(&rows, "dev");
    assert_eq!(row(&rows, V)[1], RG);
    let listed = sb
        .run(&["vault", "list", "-g", RG, "-o", "json"])
        .ok()
        .json();
    assert_eq!(names(&listed), ["cli-vault", "dev"]);
    let empty = sb
        .run(&["vault", "list", "-g", "other-group", "-o", "json"])
        .ok()
        .json();
    assert_eq!(empty, serde_json::json!([]));

    // ---- update: tags, purge protection on (and never off again)
    let updated = sb
        .run(&[
            "vault", "update", "-n", V, "--tags", "env=prod", "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(updated["tags"], serde_json::json!({"env": "prod"}));
    let (_, rows) = table(
        &sb.run(&[
            "vault",
            "update",
            "-n",
            V,
            "--enable-purge-protection",
            "true",
        ])
        .ok()
        .out,
    );
    assert_eq!(rows[0][4], "True", "{rows:?}");
    sb.run(&[
        "vault",
        "update",
        "-n",
        V,
        "--enable-purge-protection",
        "false",
    ])
    .fails(3, "BadRequest");
    sb.run(&["vault", "update", "-n", V, "--retention-days", "30"])
        .fails(3, "BadRequest");
    let shown = sb
        .run(&["vault", "show", "-n", V, "-o", "json"])
        .ok()
        .json();
    assert_eq!(shown["properties"]["enablePurgeProtection"], true);
    assert_eq!(shown["properties"]["softDeleteRetentionInDays"], 7);
    assert_eq!(shown["tags"], serde_json::json!({"env": "prod"}));
    sb.run(&["vault", "update", "-n", "cli-nosuch", "--tags", "a=b"])
        .fails(4, "ResourceNotFound");

    // ---- access policies, and what they allow on the data plane
    // A new vault has no policies: not even its creator may use its secrets.
    sb.run(&a(&["secret", "list"], &vault))
        .fails(5, "Forbidden");
    let set = sb
        .run(&[
            "policy",
            "set",
            "--vault",
            V,
            "--object-id",
            &admin_oid,
            "--secret-permissions",
            "get,list,set,delete,recover",
        ])
        .ok();
    let (header, rows) = table(&set.out);
    assert_eq!(header, ["ObjectId", "TenantId", "Secrets"]);
    assert_eq!(row(&rows, &admin_oid)[2], "get,list,set,delete,recover");
    let value = random_value();
    sb.run_stdin(
        &a(
            &["secret", "set"],
            &[&vault[..], &["--name", "db"]].concat(),
        ),
        Some(value.as_bytes()),
    )
    .ok();

    let (reader, reader_creds) = second_principal(&sb, &server, dir.path(), "reader");
    let reader_oid = reader["object_id"].as_str().unwrap();
    let as_reader = |args: &[&str]| {
        let mut v = args.to_vec();
        v.extend_from_slice(&["--credentials", reader_creds.to_str().unwrap()]);
        sb.run(&v)
    };
    as_reader(&a(&["secret", "show", "--name", "db"], &vault)).fails(5, "Forbidden");
    let policies = sb
        .run(&[
            "policy",
            "set",
            "--vault",
            V,
            "--object-id",
            reader_oid,
            "--secret-permissions",
            "get",
            "-o",
            "json",
        ])
        .ok()
        .json();
    // The vault's policies as they now are: both objects.
    let by_oid = |list: &Value, oid: &str| -> Option<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["objectId"] == oid)
            .cloned()
    };
    assert_eq!(policies.as_array().unwrap().len(), 2, "{policies}");
    assert_eq!(
        by_oid(&policies, reader_oid).unwrap()["permissions"]["secrets"],
        serde_json::json!(["get"])
    );
    let shown = as_reader(&a(
        &["secret", "show", "--name", "db", "-o", "json"],
        &vault,
    ))
    .ok()
    .json();
    assert_eq!(shown["value"], value);
    as_reader(&a(&["secret", "list"], &vault)).fails(5, "Forbidden");
    // `set` gives exactly these permissions: list instead of get.
    sb.run(&[
        "policy",
        "set",
        "--vault",
        V,
        "--object-id",
        reader_oid,
        "--secret-permissions",
        "list",
    ])
    .ok();
    as_reader(&a(&["secret", "list"], &vault)).ok();
    as_reader(&a(&["secret", "show", "--name", "db"], &vault)).fails(5, "Forbidden");
    let left = sb
        .run(&["policy", "delete", "--vault", V, "--object-id", reader_oid])
        .ok();
    let (_, rows) = table(&left.out);
    assert_eq!(rows.len(), 1, "only the admin's policy is left: {rows:?}");
    row(&rows, &admin_oid);
    as_reader(&a(&["secret", "list"], &vault)).fails(5, "Forbidden");
    // A reader may not change policies (no role at all on the management plane).
    as_reader(&[
        "policy",
        "set",
        "--vault",
        V,
        "--object-id",
        reader_oid,
        "--secret-permissions",
        "all",
    ])
    .fails(5, "AuthorizationFailed");
    sb.run(&[
        "policy",
        "set",
        "--vault",
        V,
        "--object-id",
        reader_oid,
        "--secret-permissions",
        "get,fly",
    ])
    .fails(2, "Usage");
    sb.run(&[
        "policy",
        "set",
        "--vault",
        "cli-nosuch",
        "--object-id",
        reader_oid,
        "--secret-permissions",
        "get",
    ])
    .fails(4, "ResourceNotFound");

    // ---- locks: CanNotDelete on the vault, ReadOnly on its resource group
    let lock = sb
        .run(&[
            "lock",
            "create",
            "-n",
            "keep",
            "-t",
            "CanNotDelete",
            "--vault",
            V,
            "--notes",
            "do not delete",
        ])
        .ok();
    let (header, rows) = table(&lock.out);
    assert_eq!(header, ["Name", "Level", "Notes", "Id"]);
    assert_eq!(
        rows[0],
        [
            "keep".to_string(),
            "CanNotDelete".into(),
            "do not delete".into(),
            format!(
                "{}/providers/Microsoft.Authorization/locks/keep",
                vault_id(&server, V)
            ),
        ]
    );
    let locks = sb
        .run(&["lock", "list", "--vault", V, "-o", "json"])
        .ok()
        .json();
    assert_eq!(names(&locks), ["keep"]);
    assert_eq!(locks[0]["properties"]["level"], "CanNotDelete");
    let refused = sb
        .run(&["vault", "delete", "-n", V])
        .fails(6, "ScopeLocked");
    assert!(refused.err.contains("'keep'"), "{}", refused.err);
    // CanNotDelete still lets the vault change.
    sb.run(&["vault", "update", "-n", V, "--tags", "locked=yes"])
        .ok();

    let frozen = sb
        .run(&[
            "lock",
            "create",
            "-n",
            "frozen",
            "-t",
            "read-only",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(frozen["properties"]["level"], "ReadOnly");
    assert_eq!(
        frozen["id"],
        format!(
            "/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.Authorization/locks/frozen",
            server.creds["subscription_id"].as_str().unwrap()
        )
    );
    // The group's locks include its vaults'.
    let (_, rows) = table(&sb.run(&["lock", "list", "-g", RG]).ok().out);
    assert_eq!(row(&rows, "frozen")[1], "ReadOnly");
    assert_eq!(row(&rows, "keep")[1], "CanNotDelete");
    let refused = sb
        .run(&["vault", "update", "-n", V, "--tags", "a=b"])
        .fails(6, "ScopeLocked");
    assert!(refused.err.contains("'frozen'"), "{}", refused.err);
    sb.run(&[
        "policy",
        "set",
        "--vault",
        V,
        "--object-id",
        reader_oid,
        "--secret-permissions",
        "get",
    ])
    .fails(6, "ScopeLocked");
    sb.run(&["vault", "create", "-n", "cli-frozen"])
        .fails(6, "ScopeLocked");
    // Reads still work, and the data plane is not the management plane.
    sb.run(&["vault", "show", "-n", V]).ok();
    sb.run(&a(&["secret", "show", "--name", "db"], &vault)).ok();
    sb.run(&["lock", "create", "-n", "bad", "-t", "Sometimes"])
        .fails_usage();

    sb.run(&["lock", "delete", "-n", "frozen"]).ok();
    sb.run(&["lock", "delete", "-n", "frozen"])
        .fails(4, "LockNotFound");
    sb.run(&["lock", "delete", "-n", "keep", "--vault", V]).ok();
    let (_, rows) = table(&sb.run(&["lock", "list", "--vault", V]).ok().out);
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(
        sb.run(&["lock", "list", "-o", "json"]).ok().json(),
        serde_json::json!([])
    );

    // ---- delete → list-deleted → recover (secrets intact) → delete → purge refused
    let deleted = sb.run(&["vault", "delete", "-n", V]).ok();
    assert!(deleted.out.is_empty() && deleted.err.is_empty());
    sb.run(&["vault", "show", "-n", V])
        .fails(4, "ResourceNotFound");
    sb.run(&["vault", "delete", "-n", V])
        .fails(4, "ResourceNotFound");
    sb.run(&a(&["secret", "show", "--name", "db"], &vault))
        .fails(4, "VaultNotFound");
    let (header, rows) = table(&sb.run(&["vault", "list-deleted"]).ok().out);
    assert_eq!(
        header,
        [
            "Name",
            "Location",
            "Deleted",
            "ScheduledPurge",
            "PurgeProtection"
        ]
    );
    let r = row(&rows, V);
    assert_eq!((r[1].as_str(), r[4].as_str()), ("local", "True"));
    let gone = sb.run(&["vault", "list-deleted", "-o", "json"]).ok().json();
    assert_eq!(names(&gone), [V]);
    assert_eq!(gone[0]["properties"]["vaultId"], vault_id(&server, V));
    // The name stays taken while the vault is recoverable.
    sb.run(&["vault", "create", "-n", V])
        .fails(6, "ConflictError");

    let recovered = sb
        .run(&["vault", "recover", "-n", V, "-o", "json"])
        .ok()
        .json();
    assert_eq!(recovered["id"], vault_id(&server, V));
    assert_eq!(recovered["properties"]["enablePurgeProtection"], true);
    sb.run(&["vault", "recover", "-n", V])
        .fails(6, "ConflictError");
    let shown = sb
        .run(&a(
            &["secret", "show", "--name", "db", "-o", "json"],
            &vault,
        ))
        .ok()
        .json();
    assert_eq!(
        shown["value"], value,
        "the secrets come back with the vault"
    );
    assert_eq!(
        sb.run(&["vault", "list-deleted", "-o", "json"]).ok().json(),
        serde_json::json!([])
    );

    sb.run(&["vault", "delete", "-n", V]).ok();
    let refused = sb
        .run(&["vault", "purge", "-n", V])
        .fails(6, "PurgeProtectionEnabled");
    assert!(refused.err.contains(V), "{}", refused.err);

    // ---- a vault without purge protection, in another group and location: recover and
    // purge find the deleted vault's group and location themselves.
    const T: &str = "cli-temp";
    sb.run(&[
        "vault",
        "create",
        "-n",
        T,
        "-g",
        "other-group",
        "-l",
        "westeurope",
    ])
    .ok();
    sb.run(&["vault", "delete", "-n", T])
        .fails(4, "ResourceNotFound");
    sb.run(&["vault", "delete", "-n", T, "-g", "other-group"])
        .ok();
    let (_, rows) = table(&sb.run(&["vault", "list-deleted"]).ok().out);
    assert_eq!(row(&rows, T)[1], "westeurope");
    let (_, rows) = table(&sb.run(&["vault", "recover", "-n", T]).ok().out);
    assert_eq!(
        rows[0][..3],
        [T, "other-group", "westeurope"].map(String::from)
    );
    sb.run(&["vault", "delete", "-n", T, "-g", "other-group"])
        .ok();
    sb.run(&["vault", "purge", "-n", T, "-l", "local"])
        .fails(4, "ResourceNotFound");
    let purged = sb.run(&["vault", "purge", "-n", T]).ok();
    assert!(purged.out.is_empty());
    sb.run(&["vault", "purge", "-n", T])
        .fails(4, "ResourceNotFound");
    sb.run(&[
        "vault",
        "recover",
        "-n",
        T,
        "-g",
        "other-group",
        "-l",
        "westeurope",
    ])
    .fails(4, "SoftDeletedVaultDoesNotExist");
    assert_eq!(
        names(&sb.run(&["vault", "list-deleted", "-o", "json"]).ok().json()),
        [V]
    );
    // The purged name is free again.
    sb.run(&["vault", "create", "-n", T]).ok();

    // ---- retention: purge protection holds until the retention ends, then the vault goes.
    advance_clock(&server, 8 * 86_400).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = sb.run(&["vault", "list-deleted", "-o", "json"]).ok().json();
        if left == serde_json::json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {left}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sb.run(&["vault", "purge", "-n", V])
        .fails(4, "ResourceNotFound");
    sb.run(&["vault", "create", "-n", V]).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_assignments_through_the_cli_and_what_they_allow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let sb = Sb::new(dir.path());
    let sub = server.creds["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_oid = oid_of(&server.admin_token().await);
    let (who, creds) = second_principal(&sb, &server, dir.path(), "builder");
    let oid = who["object_id"].as_str().unwrap().to_string();
    let as_who = |args: &[&str]| {
        let mut v = args.to_vec();
        v.extend_from_slice(&["--credentials", creds.to_str().unwrap()]);
        sb.run(&v)
    };
    let group_scope = format!("/subscriptions/{sub}/resourceGroups/{RG}");

    // No role yet: nothing on the management plane.
    as_who(&["vault", "create", "-n", "built-1"]).fails(5, "AuthorizationFailed");
    as_who(&["vault", "list"]).fails(5, "AuthorizationFailed");
    as_who(&["role", "list"]).fails(5, "AuthorizationFailed");

    // ---- assign (table and JSON), list, refusals
    let assigned = sb
        .run(&[
            "role",
            "assign",
            "--role",
            "Contributor",
            "--assignee",
            &oid,
            "-g",
            RG,
        ])
        .ok();
    let (header, rows) = table(&assigned.out);
    assert_eq!(header, ["Name", "Role", "Principal", "Scope"]);
    assert_eq!(
        rows[0][1..],
        ["Contributor", &oid, &group_scope].map(String::from)
    );
    let contributor_name = rows[0][0].clone();
    let reader = sb
        .run(&[
            "role",
            "assign",
            "--role",
            "reader",
            "--assignee",
            &oid,
            "--vault",
            "dev",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(reader["properties"]["scope"], vault_id(&server, "dev"));
    assert_eq!(reader["properties"]["principalId"], oid);
    assert!(
        reader["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap()
            .ends_with("/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
        "{reader}"
    );
    sb.run(&[
        "role",
        "assign",
        "--role",
        "Contributor",
        "--assignee",
        &oid,
        "--scope",
        &group_scope,
    ])
    .fails(6, "RoleAssignmentExists");
    sb.run(&["role", "assign", "--role", "Janitor", "--assignee", &oid])
        .fails(2, "Usage");
    sb.run(&[
        "role",
        "assign",
        "--role",
        "Reader",
        "--assignee",
        "00000000-0000-0000-0000-000000000000",
    ])
    .fails(3, "PrincipalNotFound");
    sb.run(&[
        "role",
        "assign",
        "--role",
        "Reader",
        "--assignee",
        &oid,
        "--name",
        "not-a-guid",
    ])
    .fails(3, "InvalidRoleAssignmentId");

    let mine = sb
        .run(&["role", "list", "--assignee", &oid, "-o", "json"])
        .ok()
        .json();
    let mut got = names(&mine);
    got.sort();
    let mut want = vec![
        contributor_name.clone(),
        reader["name"].as_str().unwrap().to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
    let (_, rows) = table(&sb.run(&["role", "list", "--assignee", &oid]).ok().out);
    assert_eq!(row(&rows, &contributor_name)[1], "Contributor");
    // At the resource group and above: the two dev Owners (the admin principal and the dev
    // user) and the Contributor, not the vault's Reader beneath.
    let (_, rows) = table(&sb.run(&["role", "list", "-g", RG, "--at-scope"]).ok().out);
    let roles: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(roles.len(), 3, "{rows:?}");
    assert_eq!(
        roles.iter().filter(|r| r.0 == "Owner").count(),
        2,
        "{rows:?}"
    );
    assert!(roles.contains(&("Owner", admin_oid.as_str())), "{rows:?}");
    assert!(roles.contains(&("Contributor", oid.as_str())), "{rows:?}");
    let (_, rows) = table(&sb.run(&["role", "list", "-g", RG]).ok().out);
    assert_eq!(rows.len(), 4, "beneath included: {rows:?}");
    let (_, rows) = table(&sb.run(&["role", "definitions"]).ok().out);
    row(&rows, "Key Vault Secrets User");

    // ---- what a Contributor of the group may do: vaults yes, locks and roles no
    let built = as_who(&["vault", "create", "-n", "built-1", "-o", "json"])
        .ok()
        .json();
    assert_eq!(built["id"], vault_id(&server, "built-1"));
    as_who(&[
        "vault",
        "update",
        "-n",
        "built-1",
        "--tags",
        "by=contributor",
    ])
    .ok();
    as_who(&["vault", "list", "-g", RG]).ok();
    let refused = as_who(&[
        "lock",
        "create",
        "-n",
        "mine",
        "-t",
        "CanNotDelete",
        "--vault",
        "built-1",
    ])
    .fails(5, "AuthorizationFailed");
    assert!(
        refused.err.contains("Microsoft.Authorization/locks/write"),
        "{}",
        refused.err
    );
    as_who(&["lock", "create", "-n", "mine", "-t", "ReadOnly"]).fails(5, "AuthorizationFailed");
    // Reading locks is allowed.
    sb.run(&[
        "lock",
        "create",
        "-n",
        "owners",
        "-t",
        "CanNotDelete",
        "--vault",
        "built-1",
    ])
    .ok();
    assert_eq!(
        names(
            &as_who(&["lock", "list", "--vault", "built-1", "-o", "json"])
                .ok()
                .json()
        ),
        ["owners"]
    );
    as_who(&["lock", "delete", "-n", "owners", "--vault", "built-1"])
        .fails(5, "AuthorizationFailed");
    as_who(&["vault", "delete", "-n", "built-1"]).fails(6, "ScopeLocked");
    sb.run(&["lock", "delete", "-n", "owners", "--vault", "built-1"])
        .ok();
    as_who(&[
        "role",
        "assign",
        "--role",
        "Owner",
        "--assignee",
        &oid,
        "-g",
        RG,
    ])
    .fails(5, "AuthorizationFailed");
    // Only in its group; deleted vaults are listed and purged at the subscription.
    as_who(&["vault", "create", "-n", "built-2", "-g", "other-group"])
        .fails(5, "AuthorizationFailed");
    as_who(&["vault", "delete", "-n", "built-1"]).ok();
    as_who(&["vault", "list-deleted"]).fails(5, "AuthorizationFailed");
    as_who(&["vault", "purge", "-n", "built-1"]).fails(5, "AuthorizationFailed");
    as_who(&["vault", "recover", "-n", "built-1"]).ok();

    // ---- delete by id and by name; the rights go with the assignment
    let deleted = sb
        .run(&[
            "role",
            "delete",
            "--id",
            &format!(
                "{group_scope}/providers/Microsoft.Authorization/roleAssignments/{contributor_name}"
            ),
        ])
        .ok();
    let (_, rows) = table(&deleted.out);
    assert_eq!(
        rows[0][..2],
        [contributor_name.clone(), "Contributor".into()]
    );
    sb.run(&[
        "role",
        "delete",
        "--id",
        &format!(
            "{group_scope}/providers/Microsoft.Authorization/roleAssignments/{contributor_name}"
        ),
    ])
    .fails(4, "RoleAssignmentNotFound");
    as_who(&["vault", "create", "-n", "built-3"]).fails(5, "AuthorizationFailed");
    let gone = sb
        .run(&[
            "role",
            "delete",
            "--name",
            reader["name"].as_str().unwrap(),
            "--vault",
            "dev",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(gone["id"], reader["id"]);
    assert_eq!(
        sb.run(&["role", "list", "--assignee", &oid, "-o", "json"])
            .ok()
            .json(),
        serde_json::json!([])
    );
    sb.run(&["role", "delete"]).fails_usage();

    // `--data-dir` names the credentials when no other source does.
    let mut c = std::process::Command::new(BIN);
    c.args(["role", "list", "--at-scope", "-o", "json", "--data-dir"])
        .arg(dir.path())
        .env_remove("STRONGBOX_CREDENTIALS")
        .env_remove("AZURE_CLIENT_SECRET")
        .env("STRONGBOX_CONFIG_DIR", sb.config.path());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        all.as_array().unwrap().len(),
        2,
        "the dev admin's and the dev user's Owner: {all}"
    );
}

#[test]
fn the_readme_lists_the_commands_the_help_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("## The `strongbox` CLI").expect("CLI section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let commands = |args: &[&str]| -> Vec<String> {
        let (code, out, err) = cli(args);
        assert_eq!(code, 0, "{err}");
        out.split("Commands:")
            .nth(1)
            .unwrap_or_else(|| panic!("no commands in {out}"))
            .split("\n\n")
            .next()
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(String::from)
            .collect()
    };
    // Every client group is shown in the section's examples.
    for group in commands(&["--help"]) {
        if ["server", "identity"].contains(&group.as_str()) {
            continue; // documented in their own sections
        }
        assert!(
            section.contains(&format!("strongbox {group}")),
            "the README's CLI section does not show `strongbox {group}`"
        );
    }
    // The management groups' subcommands, exactly, as `strongbox GROUP a|b|c`.
    for group in ["vault", "lock", "policy", "role"] {
        let listed = commands(&[group, "--help"]).join("|");
        assert!(
            section.contains(&format!("strongbox {group} {listed} ")),
            "the README's CLI section should list `strongbox {group} {listed} …`"
        );
    }
    // The exit codes the binary states are the README's.
    let (_, help, _) = cli(&["--help"]);
    for (n, what) in [
        ("0", "ok"),
        ("1", "check failed"),
        ("2", "usage"),
        ("3", "error"),
        ("4", "not found"),
        ("5", "not authenticated or forbidden"),
        ("6", "conflict"),
    ] {
        assert!(help.contains(&format!("{n} {what}")), "{help}");
    }
    for needle in [
        "**0**",
        "**1**",
        "**2**",
        "**3**",
        "**4** not found",
        "**5** not authenticated",
        "**6** conflict",
    ] {
        assert!(section.contains(needle), "README lacks {needle}");
    }
}
