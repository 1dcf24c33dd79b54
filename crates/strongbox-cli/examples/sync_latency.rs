//! Edge propagation benchmark (issue 5): how long a vault change takes to reach an edge file
//! target. Starts a real `strongbox server --dev`, creates and activates a device, runs a real
//! `strongbox agent run` delivering one synced secret as files, then writes N new versions one
//! after another and, for each, measures the time from the vault's acknowledgement of the PUT
//! until the new value is readable through the target's `..data` link.
//!
//! Reported as p50/p99/max, and as ratios against a baseline measured in the same run: the PUT
//! round trip itself (TLS + token check + encrypt + fsynced commit + audit), i.e. "the edge sees
//! the change N PUT-times after it was acknowledged". Peers poll (SSE: 1 h by default, CSI
//! rotation: 2 min; research/edge-sync.md §6), so they have no sub-second figure to compare.
//!
//! `cargo build --release -p strongbox-cli --bin strongbox --example sync_latency &&
//!  target/release/examples/sync_latency [changes=1000] [path/to/strongbox]`

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(bin: &Path, args: &[&str], creds: Option<&Path>, stdin: &str) -> String {
    use std::io::Write;
    let mut c = Command::new(bin);
    c.args(args);
    if let Some(p) = creds {
        c.arg("--credentials").arg(p);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let bin = args.get(2).map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("strongbox")
    });
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let port = free_port();
    let _server = Kill(
        Command::new(&bin)
            .args(["server", "--dev", "--data-dir"])
            .arg(&server_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let creds_path = server_dir.join("dev-credentials.json");
    let creds: Value = loop {
        if let Ok(t) = std::fs::read_to_string(&creds_path)
            && let Ok(v) = serde_json::from_str::<Value>(&t)
            && v["authority"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":{port}")))
        {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let creds_p = Some(creds_path.as_path());
    let ca = creds["ca_cert"].as_str().unwrap().to_string();
    cli(&bin, &["device", "create", "-n", "bench"], creds_p, "");
    let key = cli(
        &bin,
        &["device", "activation-key", "-n", "bench"],
        creds_p,
        "",
    );
    let agent_dir = dir.path().join("agent");
    cli(
        &bin,
        &[
            "agent",
            "activate",
            "--key",
            key.trim(),
            "--data-dir",
            agent_dir.to_str().unwrap(),
            "--server-ca",
            &ca,
        ],
        None,
        "",
    );
    let device: Value = serde_json::from_str(&cli(
        &bin,
        &["device", "show", "-n", "bench", "-o", "json"],
        creds_p,
        "",
    ))
    .unwrap();
    let vault = device["properties"]["keyVault"]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // The admin's token (also to learn its object id for the access policy).
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .resolve(
            &format!("{vault}.vault.localhost"),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let authority = creds["authority"].as_str().unwrap();
    let tenant = creds["tenant_id"].as_str().unwrap();
    let token: Value = http
        .post(format!("{authority}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds["client_id"].as_str().unwrap()),
            ("client_secret", creds["client_secret"].as_str().unwrap()),
            ("scope", &format!("https://vault.localhost:{port}/.default")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let oid = {
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };
    cli(
        &bin,
        &[
            "policy",
            "set",
            "--vault",
            &vault,
            "--object-id",
            &oid,
            "--secret-permissions",
            "get,list,set",
        ],
        creds_p,
        "",
    );

    // tmpfs when there is one, as production should deliver.
    let secrets_dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap().keep()
    } else {
        dir.path().join("edge")
    };
    let agent_port = free_port();
    let _agent = Kill(
        Command::new(&bin)
            .args([
                "agent",
                "run",
                "--data-dir",
                agent_dir.to_str().unwrap(),
                "--server-ca",
                &ca,
            ])
            .args(["--port", &agent_port.to_string(), "--secrets-dir"])
            .arg(&secrets_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while !agent_dir.join("api.token").exists() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let values = dir.path().join("values.json");
    std::fs::write(&values, r#"{"value": "v0"}"#).unwrap();
    cli(
        &bin,
        &[
            "synced-secret",
            "create",
            "-n",
            "bench",
            "--secret",
            "value=bench-secret",
            "--values-file",
            values.to_str().unwrap(),
            "--agent-dir",
            agent_dir.to_str().unwrap(),
        ],
        creds_p,
        "",
    );
    let file = secrets_dir.join("bench/..data/value");
    let url =
        format!("https://{vault}.vault.localhost:{port}/secrets/bench-secret?api-version=7.6");

    let mut put = Vec::with_capacity(n);
    let mut edge = Vec::with_capacity(n);
    for i in 1..=n {
        let value = format!("v{i}");
        let t0 = Instant::now();
        let r = http
            .put(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({"value": value}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let acked = Instant::now();
        put.push(acked - t0);
        loop {
            if std::fs::read(&file).is_ok_and(|b| b == value.as_bytes()) {
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(30),
                "change {i} did not arrive"
            );
            tokio::time::sleep(Duration::from_micros(250)).await;
        }
        edge.push(acked.elapsed());
    }
    put.sort();
    edge.sort();
    let metrics = reqwest::get(format!("http://127.0.0.1:{agent_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let agent_count = metrics
        .lines()
        .find(|l| l.starts_with("strongbox_agent_sync_latency_seconds_count"))
        .unwrap_or("")
        .to_string();
    println!(
        "{n} changes, one at a time ({} build, SQLite, files target on {})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        secrets_dir.display()
    );
    println!("| measure | p50 ms | p99 ms | max ms | p50 ratio to PUT |");
    println!("|---|---|---|---|---|");
    for (name, d) in [
        ("PUT acknowledged (baseline)", &put),
        ("vault ack → edge file", &edge),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(pct(d, 0.5)),
            ms(pct(d, 0.99)),
            ms(*d.last().unwrap()),
            ms(pct(d, 0.5)) / ms(pct(&put, 0.5))
        );
    }
    println!("agent histogram: {agent_count}");
    let _ = std::fs::remove_dir_all(&secrets_dir);
}
