//! Audit query and insights checked against known traffic, and the diagnostic-setting file
//! sink: records reach the files, files rotate by size and by age (moved with --dev-clock), a
//! kill -9 loses nothing and doubles nothing, `audit verify --dir` passes across rotation and
//! names the file and line of a tampered record.

use crate::cli_support::*;
use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn nearest_rank(sorted: &[i64], p: usize) -> i64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_and_insights_match_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--dev-clock"]).await;
    let sb = Sb::new(dir.path());
    let admin = server.admin_token().await;
    let admin_oid = oid_of(&admin);
    let reader = principal(&sb, "reader", Some("get"));
    let reader_token = server
        .token_for(
            reader["client_id"].as_str().unwrap(),
            reader["client_secret"].as_str().unwrap(),
        )
        .await;
    let reader_oid = reader["object_id"].as_str().unwrap().to_string();

    // Phase 1: admin sets 3 and reads 2 + 2 missing; the reader reads 2 and is refused a set.
    for n in ["a", "b", "c"] {
        let body = json!({"value": random_value()});
        assert_eq!(
            server
                .call(&admin, Method::PUT, &format!("/secrets/{n}"), Some(body))
                .await
                .0,
            200
        );
    }
    for path in [
        "/secrets/a",
        "/secrets/a",
        "/secrets/missing",
        "/secrets/missing",
    ] {
        server.call(&admin, Method::GET, path, None).await;
    }
    for _ in 0..2 {
        assert_eq!(
            server
                .call(&reader_token, Method::GET, "/secrets/a", None)
                .await
                .0,
            200
        );
    }
    let refused = server
        .call(
            &reader_token,
            Method::PUT,
            "/secrets/d",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(refused.0, 403);
    // Phase 2, two hours later: one read, one missing.
    advance_clock(&server, 2 * 3600).await;
    let admin = server.admin_token().await; // the first one has expired by now
    server.call(&admin, Method::GET, "/secrets/b", None).await;
    server
        .call(&admin, Method::GET, "/secrets/missing", None)
        .await;

    // Every record, oldest first, in pages of 3 (nextLink paging).
    let all = sb
        .run(&[
            "audit",
            "query",
            "--vault",
            "dev",
            "--page-size",
            "3",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let all = all.as_array().unwrap();
    let traffic: Vec<&Value> = all
        .iter()
        .filter(|r| r["operationName"].as_str().unwrap().starts_with("Secret"))
        .collect();
    assert_eq!(traffic.len(), 12, "{all:#?}");
    let seqs: Vec<i64> = all.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let first = traffic[0]["time"].as_str().unwrap().to_string();
    let phase2 = traffic[10]["time"].as_str().unwrap().to_string();
    let last_ms = time::OffsetDateTime::parse(
        traffic[11]["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp_nanos()
        / 1_000_000;
    // Just after the last record (to is exclusive), to the millisecond.
    let to = time::OffsetDateTime::from_unix_timestamp_nanos((last_ms + 1) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let window = ["--vault", "dev", "--from", &first, "--to", &to];
    let q = |extra: &[&str]| {
        let mut a = vec!["audit", "query", "-o", "json"];
        a.extend_from_slice(&window);
        a.extend_from_slice(extra);
        sb.run(&a).ok().json().as_array().unwrap().clone()
    };
    assert_eq!(q(&[]).len(), 12);
    let sets = q(&["--operation", "SecretSet"]);
    assert_eq!(sets.len(), 4);
    assert!(sets.iter().all(|r| r["operationName"] == "SecretSet"));
    let failures = q(&["--result", "Failure"]);
    assert_eq!(
        failures
            .iter()
            .map(|r| r["properties"]["httpStatusCode"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [404, 404, 403, 404]
    );
    let by_reader = q(&["--caller", &reader_oid]);
    assert_eq!(by_reader.len(), 3);
    assert!(
        by_reader
            .iter()
            .all(|r| r["identity"]["claim"]["oid"] == reader_oid.as_str())
    );
    let reader_failed = q(&["--caller", &reader_oid, "--result", "failure"]);
    assert_eq!(reader_failed.len(), 1);
    assert_eq!(reader_failed[0]["operationName"], "SecretSet");
    let later = sb
        .run(&[
            "audit", "query", "-o", "json", "--vault", "dev", "--from", &phase2, "--to", &to,
        ])
        .ok()
        .json();
    assert_eq!(later.as_array().unwrap().len(), 2);
    let capped = sb
        .run(&[
            "audit", "query", "-o", "json", "--vault", "dev", "--max", "5",
        ])
        .ok()
        .json();
    assert_eq!(capped.as_array().unwrap().len(), 5);
    let table = sb
        .run(&[
            "audit",
            "query",
            "--vault",
            "dev",
            "--operation",
            "SecretSet",
        ])
        .ok();
    assert!(table.out.starts_with("Seq  Time"), "{}", table.out);
    assert_eq!(table.out.lines().count(), 2 + 4);

    // Insights over the same window, hourly: numbers from SQL equal the traffic.
    let ins = sb
        .run(&[
            "audit",
            "insights",
            "-o",
            "json",
            "--interval",
            "PT1H",
            "--vault",
            "dev",
            "--from",
            &first,
            "--to",
            &to,
        ])
        .ok()
        .json();
    assert_eq!(
        (ins["total"].as_i64(), ins["failures"].as_i64()),
        (Some(12), Some(4))
    );
    assert_eq!(
        ins["byOperation"],
        json!([{"operationName": "SecretGet", "count": 8, "failures": 3},
               {"operationName": "SecretSet", "count": 4, "failures": 1}])
    );
    assert_eq!(
        ins["byResult"],
        json!([{"resultType": "Success", "count": 8}, {"resultType": "Failure", "count": 4}])
    );
    assert_eq!(
        ins["byCaller"],
        json!([{"callerObjectId": admin_oid, "count": 9, "failures": 3},
               {"callerObjectId": reader_oid, "count": 3, "failures": 1}])
    );
    let mut durations: Vec<i64> = traffic
        .iter()
        .map(|r| r["durationMs"].as_i64().unwrap())
        .collect();
    durations.sort();
    assert_eq!(
        ins["latencyMs"],
        json!({"count": 12, "p50": nearest_rank(&durations, 50), "p90": nearest_rank(&durations, 90),
               "p99": nearest_rank(&durations, 99), "max": durations[11]})
    );
    let timeline: Vec<(i64, i64)> = ins["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["count"].as_i64().unwrap(),
                b["failures"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(timeline, [(10, 3), (0, 0), (2, 1)]);
    assert_eq!(ins["timeline"][0]["start"], first.as_str());
    // The table form prints the same numbers.
    let t = sb
        .run(&[
            "audit",
            "insights",
            "--interval",
            "PT1H",
            "--vault",
            "dev",
            "--from",
            &first,
            "--to",
            &to,
        ])
        .ok();
    assert!(t.out.starts_with("12 records, 4 failures"), "{}", t.out);
    // Filters apply to insights too.
    let ins = sb
        .run(&[
            "audit",
            "insights",
            "-o",
            "json",
            "--vault",
            "dev",
            "--from",
            &first,
            "--to",
            &to,
            "--caller",
            &reader_oid,
        ])
        .ok()
        .json();
    assert_eq!(ins["total"], 3);

    // The reader holds no role: the audit API refuses it (exit 5), and the refusal is audited.
    let reader_creds = creds_for(&server, dir.path(), &reader);
    sb.run(&[
        "--credentials",
        reader_creds.to_str().unwrap(),
        "audit",
        "query",
        "--vault",
        "dev",
    ])
    .fails(5, "AuthorizationFailed");
    let refusals = sb
        .run(&[
            "audit",
            "query",
            "-o",
            "json",
            "--vault",
            "dev",
            "--caller",
            &reader_oid,
            "--operation",
            "Microsoft.Insights/logs/read",
        ])
        .ok()
        .json();
    assert_eq!(refusals.as_array().unwrap().len(), 1);
    assert_eq!(refusals[0]["resultSignature"], "Forbidden");
    // Bad filters are the server's 400s (the CLI passes them through).
    sb.run(&["audit", "insights", "--vault", "dev", "--interval", "PT1S"])
        .fails(3, "BadRequest");
    sb.run(&["audit", "query", "--vault", "dev", "--from", "yesterday"])
        .fails(2, "Usage");
    sb.run(&["audit", "query", "--vault", "nosuch"])
        .fails(4, "ResourceNotFound");
    drop(server);
}

/// The one chain directory under an account directory.
fn chain_dir(account: &Path) -> PathBuf {
    let dirs = strongbox_server::audit_files::find_chain_dirs(account).unwrap();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Records in the files (from `audit verify --dir`), once they reach `at_least`.
fn wait_for_records(sb: &Sb, dir: &Path, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sb.run(&[
            "audit",
            "verify",
            "--dir",
            dir.to_str().unwrap(),
            "-o",
            "json",
        ]);
        if o.code == 0 {
            let n: i64 = o
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["records"].as_i64().unwrap())
                .sum();
            if n >= at_least {
                return n;
            }
        }
        assert!(
            Instant::now() < deadline,
            "files never reached {at_least} records: {}{}",
            o.out,
            o.err
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Records in the store's chain of `dev` (offline check).
fn store_records(sb: &Sb) -> i64 {
    let o = sb
        .run(&[
            "audit",
            "verify",
            "--data-dir",
            sb.data_dir.to_str().unwrap(),
            "--vault",
            "dev",
        ])
        .ok();
    let line = o
        .out
        .lines()
        .find(|l| l.starts_with("dev: "))
        .unwrap()
        .to_string();
    line.trim_start_matches("dev: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn put_secrets(server: &Server, token: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut values = Vec::new();
    for i in 0..n {
        let v = random_value();
        let (s, _) = server
            .call(
                token,
                Method::PUT,
                &format!("/secrets/{prefix}{i}"),
                Some(json!({"value": v})),
            )
            .await;
        assert_eq!(s, 200);
        values.push(v);
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostic_settings_deliver_rotate_survive_kill_9_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--dev-clock"]).await;
    let sb = Sb::new(dir.path());
    let token = server.admin_token().await;
    let storage = dir.path().join("storage");

    // Two destinations: small files (size rotation), hourly files (age rotation).
    let small = sb
        .run(&[
            "storage",
            "create",
            "--name",
            "small",
            "--max-file-bytes",
            "1024",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        small["properties"]["localPath"],
        storage.join("small").to_str().unwrap()
    );
    sb.run(&[
        "storage",
        "create",
        "--name",
        "hourly",
        "--dir",
        "nested/hourly",
        "--max-file-age",
        "3600",
    ])
    .ok();
    let listed = sb.run(&["storage", "list", "-o", "json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    sb.run(&[
        "diagnostic-settings",
        "create",
        "--vault",
        "dev",
        "--name",
        "to-small",
        "--storage-account",
        "small",
    ])
    .ok();
    sb.run(&[
        "diag",
        "create",
        "--vault",
        "dev",
        "--name",
        "to-hourly",
        "--storage-account",
        "hourly",
        "--categories",
        "AuditEvent",
    ])
    .ok();
    let settings = sb
        .run(&["diag", "list", "--vault", "dev", "-o", "json"])
        .ok()
        .json();
    assert_eq!(settings.as_array().unwrap().len(), 2);
    let shown = sb
        .run(&[
            "diag", "show", "--vault", "dev", "--name", "TO-SMALL", "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(shown["name"], "to-small");
    assert!(
        shown["properties"]["storageAccountId"]
            .as_str()
            .unwrap()
            .ends_with("/storageAccounts/small")
    );
    // A storage account in use cannot be deleted.
    sb.run(&["storage", "delete", "--name", "small"])
        .fails(6, "StorageAccountInUse");

    let mut values = put_secrets(&server, &token, "a", 30).await;
    let small_dir = storage.join("small");
    let hourly_dir = storage.join("nested/hourly");
    let n = wait_for_records(&sb, &small_dir, 32);
    wait_for_records(&sb, &hourly_dir, n);
    let small_chain = chain_dir(&small_dir);
    let hourly_chain = chain_dir(&hourly_dir);
    assert!(
        small_chain
            .to_str()
            .unwrap()
            .contains("/insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/"),
        "{small_chain:?}"
    );
    let m = manifest(&small_chain);
    assert!(
        m["files"].as_array().unwrap().len() >= 3,
        "size rotation: {m:#}"
    );
    assert!(
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["bytes"].as_u64().unwrap() >= 1024)
    );
    assert_eq!(
        manifest(&hourly_chain)["files"].as_array().unwrap().len(),
        0
    );

    // Two hours later the hourly file is closed on the next write, and a new one begun.
    advance_clock(&server, 2 * 3600).await;
    let token = server.admin_token().await;
    values.extend(put_secrets(&server, &token, "b", 3).await);
    wait_for_records(&sb, &hourly_dir, n + 3);
    let hm = manifest(&hourly_chain);
    assert_eq!(
        hm["files"].as_array().unwrap().len(),
        1,
        "age rotation: {hm:#}"
    );
    assert_eq!(hm["current"]["name"], "00000002.jsonl");

    // kill -9 in the middle of traffic; after a restart delivery resumes from the files.
    let writer = {
        let (client, url, token) = (
            server.client.clone(),
            server.vault_url("dev"),
            token.clone(),
        );
        tokio::spawn(async move {
            for i in 0..200 {
                let sent = client
                    .put(format!("{url}/secrets/c{i}?api-version=7.6"))
                    .bearer_auth(&token)
                    .json(&json!({"value": format!("crash-value-{i}")}))
                    .send()
                    .await;
                if sent.is_err() {
                    break;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill9();
    writer.await.unwrap();
    let server = Server::start(dir.path(), &["--dev-clock"]).await;
    let token = server.admin_token().await;
    values.extend(put_secrets(&server, &token, "d", 5).await);
    let total = store_records(&sb);
    assert_eq!(wait_for_records(&sb, &small_dir, total), total);
    assert_eq!(wait_for_records(&sb, &hourly_dir, total), total);

    // The whole storage root verifies: both accounts' files, every link, across rotations.
    let all = sb
        .run(&["audit", "verify", "--dir", storage.to_str().unwrap()])
        .ok();
    assert_eq!(
        all.out
            .lines()
            .filter(|l| l.ends_with("chain intact"))
            .count(),
        2,
        "{}",
        all.out
    );
    assert!(all.out.contains(&format!("{total} records")), "{}", all.out);

    // Lines are AuditEvent records with their chain position; no secret value is in any file.
    let m = manifest(&small_chain);
    let second = small_chain.join(m["files"][1]["name"].as_str().unwrap());
    let text = std::fs::read_to_string(&second).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["seq"], m["files"][1]["firstSeq"]);
    assert_eq!(line["prevHash"], m["files"][0]["lastHash"]);
    // The whole chain: data-plane AuditEvent records and the vault's Administrative ones.
    assert!(["AuditEvent", "Administrative"].contains(&line["category"].as_str().unwrap()));
    assert!(line["operationName"].is_string() && line["hash"].as_str().unwrap().len() == 64);
    for f in walk(&storage) {
        let bytes = std::fs::read(&f).unwrap();
        for v in values.iter().map(String::as_str).chain(["crash-value-"]) {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{v} in {f:?}"
            );
        }
    }

    // Tamper with the second line of the second file: verify fails (exit 1) naming it.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2);
    let edited = lines[1].replacen(
        "\"resultType\":\"Success\"",
        "\"resultType\":\"Failure\"",
        1,
    );
    assert_ne!(edited, lines[1]);
    let mut tampered = lines.clone();
    tampered[1] = &edited;
    std::fs::write(&second, format!("{}\n", tampered.join("\n"))).unwrap();
    let broken = sb.run(&["audit", "verify", "--dir", small_dir.to_str().unwrap()]);
    assert_eq!(broken.code, 1, "{}{}", broken.out, broken.err);
    assert!(
        broken
            .out
            .contains(&format!("chain broken at {}:2: record", second.display())),
        "{}",
        broken.out
    );
    let j = sb.run(&[
        "audit",
        "verify",
        "--dir",
        small_dir.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(j.code, 1);
    assert_eq!(j.json()[0]["break"]["line"], 2);
    // The hourly copy and the store are untouched and still verify.
    sb.run(&["audit", "verify", "--dir", hourly_dir.to_str().unwrap()])
        .ok();
    store_records(&sb);

    // Removing the settings stops delivery; then the accounts can go (the files stay).
    sb.run(&["diag", "delete", "--vault", "dev", "--name", "to-small"])
        .ok();
    sb.run(&["diag", "delete", "--vault", "dev", "--name", "to-hourly"])
        .ok();
    sb.run(&["diag", "show", "--vault", "dev", "--name", "to-small"])
        .fails(4, "ResourceNotFound");
    sb.run(&["storage", "delete", "--name", "small"]).ok();
    sb.run(&["storage", "show", "--name", "small"])
        .fails(4, "ResourceNotFound");
    assert!(second.exists());
    drop(server);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Two servers on one PostgreSQL database share a storage root: both run the file sink over the
/// same directories, and the directory lock lets exactly one write, so the files hold every
/// record of the chain once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_deliver_one_copy_to_a_shared_storage_root() {
    let Some(url) = strongbox_store_postgres::test_database_url("sharedsink").await else {
        return;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let pass = dir_a.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple").unwrap();
    let (p, root) = (pass.to_str().unwrap(), shared.path().to_str().unwrap());
    let args = [
        "--store",
        &url,
        "--passphrase-file",
        p,
        "--storage-root",
        root,
    ];
    let a = Server::start(dir_a.path(), &args).await;
    let b = Server::start(dir_b.path(), &args).await;
    let sb = Sb::new(dir_a.path());
    sb.run(&[
        "storage",
        "create",
        "--name",
        "shared",
        "--max-file-bytes",
        "2048",
    ])
    .ok();
    sb.run(&[
        "diag",
        "create",
        "--vault",
        "dev",
        "--name",
        "both",
        "--storage-account",
        "shared",
    ])
    .ok();
    let (ta, tb) = (a.admin_token().await, b.admin_token().await);
    for i in 0..15 {
        put_secrets(&a, &ta, &format!("a{i}-"), 1).await;
        put_secrets(&b, &tb, &format!("b{i}-"), 1).await;
    }
    let verify = sb
        .run(&[
            "audit",
            "verify",
            "--data-dir",
            dir_a.path().to_str().unwrap(),
            "--store",
            &url,
            "--vault",
            "dev",
        ])
        .ok();
    let line = verify
        .out
        .lines()
        .find(|l| l.starts_with("dev: "))
        .unwrap()
        .to_string();
    let total: i64 = line
        .trim_start_matches("dev: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total >= 31, "{line}"); // 30 sets and the setting's own record
    let account = shared.path().join("shared");
    assert_eq!(wait_for_records(&sb, &account, total), total);
    // Give the other node's sink a few passes: it must not add anything.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let o = sb
        .run(&[
            "audit",
            "verify",
            "--dir",
            account.to_str().unwrap(),
            "-o",
            "json",
        ])
        .ok();
    assert_eq!(o.json()[0]["records"], total);
    drop((a, b));
}
