//! The `strongbox secret …` commands against the real server over HTTPS: values from stdin and
//! files, every command, JSON and table output, exit codes and one-line errors, login.

use crate::cli_support::*;
use crate::common::*;

const V: &[&str] = &["--vault", "dev"];

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    let mut a = head.to_vec();
    a.extend_from_slice(V);
    a.extend_from_slice(tail);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_commands_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let sb = Sb::new(dir.path());

    // set from stdin: the bytes exactly (a trailing newline is part of the value); set does
    // not echo the value.
    let stdin_value = format!("{}\n", random_value());
    let set = sb
        .run_stdin(
            &args(&["secret", "set"], &["--name", "from-stdin"]),
            Some(stdin_value.as_bytes()),
        )
        .ok();
    assert!(
        set.out.starts_with("Name") && set.out.contains("from-stdin"),
        "{}",
        set.out
    );
    assert!(
        !set.out.contains(stdin_value.trim()),
        "set must not print the value"
    );
    let shown = sb
        .run(&args(
            &["secret", "show", "-o", "json"],
            &["--name", "from-stdin"],
        ))
        .ok()
        .json();
    assert_eq!(shown["value"], stdin_value);

    // set from a file, with content type, tags and attributes.
    let file_value = random_value();
    let f = dir.path().join("value.txt");
    std::fs::write(&f, &file_value).unwrap();
    let set = sb
        .run(&args(
            &["secret", "set", "-o", "json"],
            &[
                "--name",
                "from-file",
                "--file",
                f.to_str().unwrap(),
                "--content-type",
                "text/plain",
                "--tags",
                "env=test",
                "team=core",
                "--expires",
                "2099-01-01T00:00:00Z",
            ],
        ))
        .ok()
        .json();
    assert!(set.get("value").is_none(), "{set}");
    assert_eq!(set["contentType"], "text/plain");
    assert_eq!(set["tags"]["team"], "core");
    assert_eq!(set["attributes"]["exp"], 4_070_908_800i64);
    // Table output of show carries the value column.
    let table = sb
        .run(&args(&["secret", "show"], &["--name", "from-file"]))
        .ok();
    let lines: Vec<&str> = table.out.lines().collect();
    assert!(
        lines[0].starts_with("Name") && lines[0].ends_with("Value"),
        "{}",
        table.out
    );
    assert!(
        lines[1].starts_with("----") && lines[2].ends_with(&file_value),
        "{}",
        table.out
    );
    // show --file writes the value (0600) instead.
    let out_file = dir.path().join("shown.txt");
    sb.run(&args(
        &["secret", "show"],
        &["--name", "from-file", "--file", out_file.to_str().unwrap()],
    ))
    .ok();
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), file_value);

    // A second version; versions and lists.
    let second = random_value();
    sb.run_stdin(
        &args(&["secret", "set"], &["--name", "from-file"]),
        Some(second.as_bytes()),
    )
    .ok();
    let versions = sb
        .run(&args(
            &["secret", "list-versions", "-o", "json"],
            &["--name", "from-file"],
        ))
        .ok()
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let first_version = set["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let old = sb
        .run(&args(
            &["secret", "show", "-o", "json"],
            &["--name", "from-file", "--version", &first_version],
        ))
        .ok()
        .json();
    assert_eq!(old["value"], file_value);
    let list = sb
        .run(&args(&["secret", "list", "-o", "json"], &[]))
        .ok()
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["from-file", "from-stdin"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("value").is_none())
    );
    let table = sb.run(&args(&["secret", "list"], &[])).ok();
    assert_eq!(table.out.lines().count(), 4, "{}", table.out);
    let capped = sb
        .run(&args(
            &["secret", "list", "-o", "json"],
            &["--maxresults", "1"],
        ))
        .ok()
        .json();
    assert_eq!(capped.as_array().unwrap().len(), 1);

    // set-attributes: disable the latest version; reading it is then forbidden (exit 5).
    let upd = sb
        .run(&args(
            &["secret", "set-attributes", "-o", "json"],
            &[
                "--name",
                "from-file",
                "--enabled",
                "false",
                "--content-type",
                "application/x-test",
                "--tags",
                "k=v",
            ],
        ))
        .ok()
        .json();
    assert_eq!(upd["attributes"]["enabled"], false);
    assert_eq!(upd["contentType"], "application/x-test");
    assert_eq!(upd["tags"], serde_json::json!({"k": "v"}));
    sb.run(&args(&["secret", "show"], &["--name", "from-file"]))
        .fails(5, "Forbidden");
    sb.run(&args(
        &["secret", "set-attributes"],
        &["--name", "from-file", "--enabled", "true"],
    ))
    .ok();

    // Not found: exit 4 with the server's code.
    let missing = sb
        .run(&args(&["secret", "show"], &["--name", "no-such-secret"]))
        .fails(4, "SecretNotFound");
    assert!(missing.out.is_empty());

    // delete → list-deleted / show-deleted → recover → delete → purge.
    let del = sb
        .run(&args(
            &["secret", "delete", "-o", "json"],
            &["--name", "from-stdin"],
        ))
        .ok()
        .json();
    assert!(
        del["recoveryId"]
            .as_str()
            .unwrap()
            .ends_with("/deletedsecrets/from-stdin")
    );
    // A name in the deleted state cannot be set: conflict, exit 6.
    sb.run_stdin(
        &args(&["secret", "set"], &["--name", "from-stdin"]),
        Some(b"x"),
    )
    .fails(6, "Conflict");
    let deleted = sb
        .run(&args(&["secret", "list-deleted", "-o", "json"], &[]))
        .ok()
        .json();
    assert_eq!(deleted.as_array().unwrap().len(), 1);
    sb.run(&args(
        &["secret", "show-deleted"],
        &["--name", "from-stdin"],
    ))
    .ok();
    sb.run(&args(&["secret", "show"], &["--name", "from-stdin"]))
        .fails(4, "SecretNotFound");
    sb.run(&args(&["secret", "recover"], &["--name", "from-stdin"]))
        .ok();
    let back = sb
        .run(&args(
            &["secret", "show", "-o", "json"],
            &["--name", "from-stdin"],
        ))
        .ok()
        .json();
    assert_eq!(back["value"], stdin_value);

    // backup → delete → purge → restore.
    let blob = dir.path().join("from-file.backup");
    sb.run(&args(
        &["secret", "backup"],
        &["--name", "from-file", "--file", blob.to_str().unwrap()],
    ))
    .ok();
    // An existing file is not overwritten unless asked.
    sb.run(&args(
        &["secret", "backup"],
        &["--name", "from-file", "--file", blob.to_str().unwrap()],
    ))
    .fails(3, "Error");
    assert!(
        !std::fs::read(&blob)
            .unwrap()
            .windows(second.len())
            .any(|w| w == second.as_bytes())
    );
    sb.run(&args(&["secret", "delete"], &["--name", "from-file"]))
        .ok();
    sb.run(&args(&["secret", "purge"], &["--name", "from-file"]))
        .ok();
    sb.run(&args(&["secret", "show-deleted"], &["--name", "from-file"]))
        .fails(4, "SecretNotFound");
    sb.run(&args(
        &["secret", "restore"],
        &["--file", blob.to_str().unwrap()],
    ))
    .ok();
    let restored = sb
        .run(&args(
            &["secret", "show", "-o", "json"],
            &["--name", "from-file"],
        ))
        .ok()
        .json();
    assert_eq!(restored["value"], second);
    // Restoring over an existing secret is a conflict.
    sb.run(&args(
        &["secret", "restore"],
        &["--file", blob.to_str().unwrap()],
    ))
    .fails(6, "Conflict");

    // Usage errors exit 2.
    assert_eq!(sb.run(&["secret", "set", "--name", "x"]).code, 2);
    sb.run_stdin(
        &args(&["secret", "set"], &["--name", "x", "--tags", "novalue"]),
        Some(b"v"),
    )
    .fails(2, "Usage");
    sb.run_stdin(
        &args(&["secret", "set"], &["--name", "bin"]),
        Some(&[0xff, 0xfe]),
    )
    .fails(2, "Usage");
    // A bad secret name is the server's 400: exit 3 with its code.
    sb.run_stdin(
        &args(&["secret", "set"], &["--name", "bad_name!"]),
        Some(b"v"),
    )
    .fails(3, "BadParameter");

    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_login_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let sb = Sb::new(dir.path());

    // No credentials anywhere: a Config error.
    let mut c = sb.command(&["secret", "list", "--vault", "dev"]);
    c.env_remove("STRONGBOX_CREDENTIALS");
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: Config: no credentials"));

    // login remembers the file (never the secret); later commands need no flag or variable.
    let mut c = sb.command(&[
        "login",
        "--credentials",
        sb.creds.to_str().unwrap(),
        "-o",
        "json",
    ]);
    c.env_remove("STRONGBOX_CREDENTIALS");
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let profile = std::fs::read_to_string(sb.config.path().join("profile.json")).unwrap();
    let secret = server.creds["client_secret"].as_str().unwrap();
    assert!(profile.contains("dev-credentials.json") && !profile.contains(secret));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sb.config.path().join("profile.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mut c = sb.command(&["secret", "list", "--vault", "dev"]);
    c.env_remove("STRONGBOX_CREDENTIALS");
    assert_eq!(c.output().unwrap().status.code(), Some(0));
    let mut c = sb.command(&["logout"]);
    c.env_remove("STRONGBOX_CREDENTIALS");
    assert_eq!(c.output().unwrap().status.code(), Some(0));
    assert!(!sb.config.path().join("profile.json").exists());

    // The same credentials from AZURE_* variables.
    let mut c = sb.command(&["secret", "list", "--vault", "dev"]);
    c.env_remove("STRONGBOX_CREDENTIALS")
        .env(
            "AZURE_TENANT_ID",
            server.creds["tenant_id"].as_str().unwrap(),
        )
        .env(
            "AZURE_CLIENT_ID",
            server.creds["client_id"].as_str().unwrap(),
        )
        .env("AZURE_CLIENT_SECRET", secret)
        .env(
            "STRONGBOX_AUTHORITY",
            server.creds["authority"].as_str().unwrap(),
        )
        .env(
            "STRONGBOX_VAULT_URL",
            server.creds["vault_url"].as_str().unwrap(),
        )
        .env(
            "STRONGBOX_CA_CERT",
            server.creds["ca_cert"].as_str().unwrap(),
        );
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A wrong client secret: the token service refuses, exit 5, and the error names no secret.
    let mut wrong = server.creds.clone();
    wrong["client_secret"] = "not-the-secret-0000".into();
    let wrong_path = dir.path().join("wrong.json");
    std::fs::write(&wrong_path, serde_json::to_vec(&wrong).unwrap()).unwrap();
    let o = sb
        .run(&[
            "--credentials",
            wrong_path.to_str().unwrap(),
            "secret",
            "list",
            "--vault",
            "dev",
        ])
        .fails(5, "invalid_client");
    assert!(!o.err.contains("not-the-secret"));

    // A principal with only `get`: set is forbidden (exit 5), get works.
    let reader = principal(&sb, "getter", Some("get"));
    let reader_creds = creds_for(&server, dir.path(), &reader);
    let rc = reader_creds.to_str().unwrap();
    sb.run_stdin(
        &["secret", "set", "--vault", "dev", "--name", "x"],
        Some(b"v"),
    )
    .ok();
    sb.run_stdin(
        &[
            "--credentials",
            rc,
            "secret",
            "set",
            "--vault",
            "dev",
            "--name",
            "x",
        ],
        Some(b"w"),
    )
    .fails(5, "Forbidden");
    sb.run(&[
        "--credentials",
        rc,
        "secret",
        "show",
        "--vault",
        "dev",
        "--name",
        "x",
    ])
    .ok();
    // A vault that does not exist.
    sb.run(&["secret", "list", "--vault", "nosuch"])
        .fails(4, "VaultNotFound");
    drop(server);
}
