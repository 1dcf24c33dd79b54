//! `strongbox secret export | import`: a whole vault through an encrypted file, interrupted
//! with kill -9 in the middle and resumed, in both directions; nothing lost, nothing doubled.

use crate::cli_support::*;
use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SECRETS: usize = 36;

/// Every secret of a vault: name → values of its versions in creation order.
async fn contents(server: &Server, token: &str, vault: &str) -> BTreeMap<String, Vec<String>> {
    let url = server.vault_url(vault);
    let get = |path: String| {
        let client = server.client.clone();
        let token = token.to_string();
        async move {
            let r = client.get(path).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let mut out = BTreeMap::new();
    let mut next = Some(format!("{url}/secrets?api-version=7.6&maxresults=25"));
    while let Some(page_url) = next {
        let page = get(page_url).await;
        for item in page["value"].as_array().unwrap() {
            let name = item["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let versions = get(format!("{url}/secrets/{name}/versions?api-version=7.6")).await;
            let mut vs: Vec<(i64, String)> = Vec::new();
            for v in versions["value"].as_array().unwrap() {
                let id = v["id"].as_str().unwrap();
                let version = id.rsplit('/').next().unwrap();
                let b = get(format!("{url}/secrets/{name}/{version}?api-version=7.6")).await;
                vs.push((
                    v["attributes"]["created"].as_i64().unwrap(),
                    format!(
                        "{}|{}|{}",
                        b["value"].as_str().unwrap(),
                        b["contentType"],
                        b["tags"]
                    ),
                ));
            }
            vs.sort_by_key(|(c, _)| *c);
            out.insert(name, vs.into_iter().map(|(_, v)| v).collect());
        }
        next = page["nextLink"].as_str().map(String::from);
    }
    out
}

/// Starts a command, waits until its checkpoint says `chunks` batches are done, then kills it
/// while the next batch is written but not yet checkpointed (the command pauses 300 ms there):
/// the resumed run must redo that batch without doubling anything.
fn kill_after(sb: &Sb, args: &[&str], checkpoint: &Path, chunks: u64) {
    let mut child = sb
        .command(args)
        .env(
            "STRONGBOX_EXPORT_PASSPHRASE",
            "correct horse battery staple",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no progress before the deadline");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        if let Ok(text) = std::fs::read(checkpoint)
            && let Ok(cp) = serde_json::from_slice::<Value>(&text)
            && cp["chunks"].as_u64().unwrap_or(0) >= chunks
        {
            std::thread::sleep(Duration::from_millis(150));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_survive_kill_9_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let sb = Sb::new(dir.path());
    let token = server.admin_token().await;

    // A vault with versions, content types and tags; one disabled latest version.
    let mut values = Vec::new();
    for i in 0..SECRETS {
        for v in 0..(1 + i % 3) {
            let value = format!("value-{i}-{v}-{}", random_value());
            let mut body = json!({"value": value});
            if i % 2 == 0 {
                body["contentType"] = json!("text/plain");
                body["tags"] = json!({"i": i.to_string()});
            }
            let (s, _) = server
                .call(
                    &token,
                    Method::PUT,
                    &format!("/secrets/s{i:03}"),
                    Some(body),
                )
                .await;
            assert_eq!(s, 200);
            values.push(value);
        }
    }
    let source = contents(&server, &token, "dev").await;
    assert_eq!(source.len(), SECRETS);

    // A second vault (`other`, which the test client resolves) to import into, with the admin allowed on it.
    sb.admin(&["vault", "create", "--name", "other"]).ok();
    sb.admin(&[
        "policy",
        "set",
        "--vault",
        "other",
        "--object-id",
        &oid_of(&token),
        "--secret-permissions",
        "all",
    ])
    .ok();

    // Export every version, killed after two batches, then resumed.
    let file = dir.path().join("vault.sbx");
    let f = file.to_str().unwrap();
    let checkpoint = dir.path().join("vault.sbx.export-checkpoint");
    let export = [
        "secret",
        "export",
        "--vault",
        "dev",
        "--file",
        f,
        "--all-versions",
        "--batch-size",
        "4",
        "--concurrency",
        "3",
    ];
    let mut slow = export.to_vec();
    slow.extend_from_slice(&["--batch-delay-ms", "300"]);
    kill_after(&sb, &slow, &checkpoint, 2);
    assert!(checkpoint.exists());
    let cp: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert!(cp["chunks"].as_u64().unwrap() < (SECRETS as u64).div_ceil(4));
    // Starting again without resuming state would be refused: the file exists. With the
    // checkpoint in place it resumes.
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, "correct horse battery staple\n").unwrap();
    let mut resumed = export.to_vec();
    resumed.extend_from_slice(&[
        "--passphrase-file",
        pass_file.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let done = sb.run(&resumed).ok().json();
    let versions: usize = source.values().map(Vec::len).sum();
    assert_eq!(
        done["exported"],
        json!({"secrets": SECRETS, "versions": versions})
    );
    assert!(!checkpoint.exists());
    // No value is readable in the file.
    let bytes = std::fs::read(&file).unwrap();
    for v in &values {
        assert!(
            !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
            "plaintext in the export"
        );
    }
    // A new export to an existing file is refused (it would not be resumable).
    sb.run(&resumed).fails(3, "Error");

    // The wrong passphrase, and a damaged file, are refused before anything is written.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "wrong horse battery staple").unwrap();
    let o = sb
        .run(&[
            "secret",
            "import",
            "--vault",
            "other",
            "--file",
            f,
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ])
        .fails(3, "Error");
    assert!(o.err.contains("wrong passphrase"), "{}", o.err);
    let damaged = dir.path().join("damaged.sbx");
    let mut d = bytes.clone();
    let at = d.len() - 40;
    d[at] ^= 1;
    std::fs::write(&damaged, &d).unwrap();
    let o = sb
        .run(&[
            "secret",
            "import",
            "--vault",
            "other",
            "--file",
            damaged.to_str().unwrap(),
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ])
        .fails(3, "Error");
    assert!(o.err.contains("damaged"), "{}", o.err);
    std::fs::remove_file(dir.path().join("damaged.sbx.import-checkpoint")).ok();
    let cut = dir.path().join("cut.sbx");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    sb.run(&[
        "secret",
        "import",
        "--vault",
        "other",
        "--file",
        cut.to_str().unwrap(),
        "--passphrase-file",
        pass_file.to_str().unwrap(),
    ])
    .fails(3, "Error");
    std::fs::remove_file(dir.path().join("cut.sbx.import-checkpoint")).ok();
    // The cut file's chunks before the cut were applied; start the real import from a clean vault.
    for name in contents(&server, &token, "other").await.keys() {
        let url = server.vault_url("other");
        for path in [
            format!("{url}/secrets/{name}"),
            format!("{url}/deletedsecrets/{name}"),
        ] {
            let r = server
                .client
                .delete(format!("{path}?api-version=7.6"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    }
    assert!(contents(&server, &token, "other").await.is_empty());

    // Import, killed after two batches, then resumed: the copy equals the source, with no
    // version written twice.
    let import_checkpoint = dir.path().join("vault.sbx.import-checkpoint");
    let import = [
        "secret",
        "import",
        "--vault",
        "other",
        "--file",
        f,
        "--batch-size",
        "4",
    ];
    let mut slow = import.to_vec();
    slow.extend_from_slice(&["--batch-delay-ms", "300"]);
    kill_after(&sb, &slow, &import_checkpoint, 2);
    let mut resumed = import.to_vec();
    resumed.extend_from_slice(&[
        "--passphrase-file",
        pass_file.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let done = sb.run(&resumed).ok().json();
    assert_eq!(
        done["imported"],
        json!({"secrets": SECRETS, "versions": versions})
    );
    assert!(!import_checkpoint.exists());
    assert_eq!(contents(&server, &token, "other").await, source);

    // Latest versions only.
    let latest = dir.path().join("latest.sbx");
    let mut c = sb.command(&[
        "secret",
        "export",
        "--vault",
        "dev",
        "--file",
        latest.to_str().unwrap(),
        "-o",
        "json",
    ]);
    c.env(
        "STRONGBOX_EXPORT_PASSPHRASE",
        "correct horse battery staple",
    );
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["exported"],
        json!({"secrets": SECRETS, "versions": SECRETS})
    );
    // A passphrase that is too short is a usage error.
    let mut c = sb.command(&[
        "secret",
        "export",
        "--vault",
        "dev",
        "--file",
        "/nonexistent/x",
    ]);
    c.env("STRONGBOX_EXPORT_PASSPHRASE", "short");
    assert_eq!(c.output().unwrap().status.code(), Some(2));
    drop(server);
}
