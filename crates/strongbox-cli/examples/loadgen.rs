//! Load generator: starts nothing itself; point it at a running `strongbox server --dev` data dir.
//! Runs each workload for a fixed time with N concurrent keep-alive connections and reports
//! req/s and latency percentiles, plus each workload's throughput as a ratio of the baseline
//! (`/healthz`: TLS + HTTP only) measured in the same run, so machine noise cancels out.
//!
//! `cargo run --release --example loadgen -- <data-dir> [seconds] [connections]`

use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Result {
    name: &'static str,
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .expect("usage: loadgen <data-dir> [seconds] [connections]"),
    );
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let conns: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let creds: Value =
        serde_json::from_slice(&std::fs::read(dir.join("dev-credentials.json")).unwrap()).unwrap();
    let authority = creds["authority"].as_str().unwrap().to_string();
    let port: u16 = authority.rsplit(':').next().unwrap().parse().unwrap();
    let ca = std::fs::read(creds["ca_cert"].as_str().unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve(
            "dev.vault.localhost",
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();
    let tenant = creds["tenant_id"].as_str().unwrap();
    let token: Value = client
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
    let vault = creds["vault_url"].as_str().unwrap().to_string();
    // 1,000 secrets of 100 bytes, as the peer benchmark used.
    for i in 0..1000 {
        let r = client
            .put(format!("{vault}/secrets/bench-{i}?api-version=7.6"))
            .bearer_auth(&token)
            .json(&json!({"value": "x".repeat(100)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let workloads: [(&'static str, reqwest::Method, bool, bool); 5] = [
        ("baseline GET /healthz", reqwest::Method::GET, false, false),
        ("GET one secret", reqwest::Method::GET, true, false),
        ("GET random of 1,000", reqwest::Method::GET, true, true),
        (
            "PUT new version, random key",
            reqwest::Method::PUT,
            true,
            true,
        ),
        (
            "PUT new version, one key",
            reqwest::Method::PUT,
            true,
            false,
        ),
    ];
    let mut results = Vec::new();
    for (name, method, vault_op, random) in workloads {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..conns {
            let (client, token, vault, method, authority) = (
                client.clone(),
                token.clone(),
                vault.clone(),
                method.clone(),
                authority.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut i = c * 7919;
                while Instant::now() < deadline {
                    i += 1;
                    let key = if random { i % 1000 } else { 0 };
                    let req = if !vault_op {
                        client.get(format!("{authority}/healthz"))
                    } else if method == reqwest::Method::PUT {
                        client
                            .put(format!("{vault}/secrets/bench-{key}?api-version=7.6"))
                            .bearer_auth(&token)
                            .json(&json!({"value": "y".repeat(100)}))
                    } else {
                        client
                            .get(format!("{vault}/secrets/bench-{key}?api-version=7.6"))
                            .bearer_auth(&token)
                    };
                    let t = Instant::now();
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            lat.extend(l);
            errors += e;
        }
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        results.push(Result {
            name,
            rps: lat.len() as f64 / secs as f64,
            p50: pct(0.5),
            p99: pct(0.99),
            errors,
        });
    }
    let base = results[0].rps;
    println!("{conns} connections, {secs} s per workload\n");
    println!("| workload | req/s | ratio to baseline | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.2} | {:.1} ms | {:.1} ms | {} |",
            r.name,
            r.rps,
            r.rps / base,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0,
            r.errors
        );
    }
}
