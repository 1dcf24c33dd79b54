//! Issue 5 end to end: a real server and a real `strongbox agent run` process. Synced secrets
//! are made with the CLI ("create new secret" and "add from vault"), delivered as kubelet-style
//! files, follow vault changes, refuse what the edge must refuse, and keep serving through an
//! uplink outage (the agent restarted meanwhile renders from its sealed cache), converging when
//! the server is back.

use crate::cli_support::oid_of;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str], creds: &Path, stdin: &str) -> (i32, String, String) {
    cli_with(args, creds, stdin)
}

fn ok(args: &[&str], creds: &Path) -> String {
    let (code, out, err) = run(args, creds, "");
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

struct Edge {
    creds: PathBuf,
    agent_dir: PathBuf,
    secrets_dir: PathBuf,
    vault: String,
    ca: String,
    agent: Option<Kill>,
    agent_port: u16,
    /// Extra `agent run` arguments.
    extra: Vec<String>,
    /// Extra environment of the agent (e.g. its KUBECONFIG).
    env: Vec<(String, String)>,
}

impl Edge {
    /// Device create → activation key → agent activate; the admin may get/list/set in the
    /// device's vault (as a user of "create new secret" needs).
    async fn new(server: &Server, root: &Path) -> Edge {
        Edge::with(server, root, &[]).await
    }

    async fn with(server: &Server, root: &Path, extra: &[&str]) -> Edge {
        Edge::with_env(server, root, extra, &[]).await
    }

    async fn with_env(server: &Server, root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Edge {
        let creds = root.join("server/dev-credentials.json");
        let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
        let agent_dir = root.join("agent");
        ok(&["device", "create", "-n", "edge1"], &creds);
        let key = ok(&["device", "activation-key", "-n", "edge1"], &creds);
        let (code, _, err) = cli(&[
            "agent",
            "activate",
            "--key",
            key.trim(),
            "--data-dir",
            agent_dir.to_str().unwrap(),
            "--server-ca",
            &ca,
        ]);
        assert_eq!(code, 0, "{err}");
        let shown: Value = serde_json::from_str(&ok(
            &["device", "show", "-n", "edge1", "-o", "json"],
            &creds,
        ))
        .unwrap();
        let vault = shown["properties"]["keyVault"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let admin = oid_of(&server.admin_token().await);
        ok(
            &[
                "policy",
                "set",
                "--vault",
                &vault,
                "--object-id",
                &admin,
                "--secret-permissions",
                "get,list,set,delete",
            ],
            &creds,
        );
        let mut e = Edge {
            creds,
            secrets_dir: root.join("edge-secrets"),
            agent_dir,
            vault,
            ca,
            agent: None,
            agent_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        e.start_agent().await;
        e
    }

    async fn start_agent(&mut self) {
        let log = std::fs::File::create(
            self.agent_dir
                .join(format!("agent-{}.log", Instant::now().elapsed().as_nanos())),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["agent", "run", "--data-dir"])
            .arg(&self.agent_dir)
            .args(["--server-ca", &self.ca])
            .args(["--port", &self.agent_port.to_string()])
            .arg("--secrets-dir")
            .arg(&self.secrets_dir)
            .args(["--poll-interval", "300"])
            .arg("--msi-challenge-dir")
            .arg(self.agent_dir.join("msi"))
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(Kill(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            let up = http
                .get(format!("http://127.0.0.1:{}/metrics", self.agent_port))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up && self.agent_dir.join("api.token").exists() {
                return;
            }
            assert!(Instant::now() < deadline, "the agent did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn edge(&self, args: &[&str]) -> (i32, String, String) {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--agent-dir", self.agent_dir.to_str().unwrap()]);
        run(&a, &self.creds, "")
    }

    fn edge_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.edge(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    fn show(&self, name: &str) -> Value {
        serde_json::from_str(&self.edge_ok(&["synced-secret", "show", "-n", name, "-o", "json"]))
            .unwrap()
    }

    /// Waits until the synced secret's status is `state`; returns it.
    async fn wait_state(&self, name: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.show(name);
            if v["status"]["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {secs} s for {state}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn file(&self, synced: &str, key: &str) -> Option<String> {
        std::fs::read_to_string(self.secrets_dir.join(synced).join(key)).ok()
    }

    async fn wait_file(&self, synced: &str, key: &str, want: Option<&str>, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.file(synced, key);
            if got.as_deref() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{synced}/{key}: waited {secs} s for {want:?}, have {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A token from the agent's managed-identity endpoint, the Azure Arc way: challenge, read
    /// the file, answer with its contents.
    async fn msi_token(&self, resource: &str) -> Result<String, String> {
        let http = reqwest::Client::new();
        let url = format!(
            "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2020-06-01&resource={resource}",
            self.agent_port
        );
        let r = http
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 401 {
            return Err(format!("no challenge: {}", r.status()));
        }
        let realm = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        let file = realm.strip_prefix("Basic realm=").unwrap();
        let secret = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        let r = http
            .get(&url)
            .header("Metadata", "true")
            .header("Authorization", format!("Basic {secret}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        match v["access_token"].as_str() {
            Some(t) if status == 200 => Ok(t.to_string()),
            _ => Err(format!("{status}: {v}")),
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.agent_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn set_secret(creds: &Path, vault: &str, name: &str, value: &str) {
    let (code, _, err) = run(
        &["secret", "set", "--vault", vault, "-n", name],
        creds,
        value,
    );
    assert_eq!(code, 0, "{err}");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn synced_secrets_follow_the_vault_and_refuse_what_the_edge_must_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let e = Edge::new(&server, dir.path()).await;
    let values = dir.path().join("values.json");
    std::fs::write(
        &values,
        r#"{"username": "opc-operator", "password": "pass-one"}"#,
    )
    .unwrap();

    // "Create new secret": values go to the vault as the admin, then sync down as one group.
    let out = e.edge_ok(&[
        "synced-secret",
        "create",
        "-n",
        "edp1secrets",
        "--secret",
        "username=opc-user",
        "--secret",
        "password=opc-pass",
        "--type",
        "basic-auth",
        "--values-file",
        values.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["state"], "Synced", "{v}");
    assert!(!out.contains("pass-one"), "a value in the output: {out}");
    assert_eq!(
        e.file("edp1secrets", "username").as_deref(),
        Some("opc-operator")
    );
    assert_eq!(
        e.file("edp1secrets", "password").as_deref(),
        Some("pass-one")
    );
    let target = e.secrets_dir.join("edp1secrets");
    assert!(
        std::fs::symlink_metadata(target.join("..data"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let shown: Value = serde_json::from_str(&ok(
        &[
            "secret", "show", "--vault", &e.vault, "-n", "opc-pass", "-o", "json",
        ],
        &e.creds,
    ))
    .unwrap();
    assert_eq!(shown["value"], "pass-one");

    // "Create new secret" never puts a version on an existing vault secret unless told to.
    std::fs::write(&values, r#"{"v": "not-written"}"#).unwrap();
    let (code, _, err) = e.edge(&[
        "synced-secret",
        "create",
        "-n",
        "again",
        "--secret",
        "v=opc-pass",
        "--values-file",
        values.to_str().unwrap(),
    ]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("SecretAlreadyExists"), "{err}");
    assert_eq!(
        e.file("edp1secrets", "password").as_deref(),
        Some("pass-one")
    );

    // Only requests addressed to the loopback port are served (DNS rebinding).
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/metrics", e.agent_port))
        .header("Host", format!("attacker.example:{}", e.agent_port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);

    // A change in the vault reaches the edge target (through the change feed; the benchmark
    // measures how fast).
    set_secret(&e.creds, &e.vault, "opc-pass", "pass-two");
    e.wait_file("edp1secrets", "password", Some("pass-two"), 10)
        .await;

    // "Add from vault": names only, then an existing secret pinned to a version.
    let listed = e.edge_ok(&["synced-secret", "add-from-vault", "--list"]);
    assert!(
        listed.contains("opc-user") && listed.contains("opc-pass"),
        "{listed}"
    );
    assert!(
        !listed.contains("pass-two") && !listed.contains("opc-operator"),
        "{listed}"
    );
    let user_version = shown_version(&e, "opc-user");
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "pinned",
        "--secret",
        &format!("user=opc-user/{user_version}"),
    ]);
    assert_eq!(e.file("pinned", "user").as_deref(), Some("opc-operator"));
    set_secret(&e.creds, &e.vault, "opc-user", "opc-operator-2");
    e.wait_file("edp1secrets", "username", Some("opc-operator-2"), 10)
        .await;
    assert_eq!(
        e.file("pinned", "user").as_deref(),
        Some("opc-operator"),
        "a pinned reference moved"
    );

    // One vault per edge: a reference into another vault is refused, nothing is made.
    let (code, _, err) = e.edge(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "other",
        "--secret",
        &format!("k=https://dev.vault.localhost:{}/secrets/x", server.port),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("VaultNotBound"), "{err}");
    // A bad key is refused before any value reaches the vault.
    std::fs::write(&values, r#"{"../x": "never-stored"}"#).unwrap();
    let (code, _, err) = e.edge(&[
        "synced-secret",
        "create",
        "-n",
        "bad",
        "--secret",
        "../x=never-written",
        "--values-file",
        values.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("InvalidKey"), "{err}");
    assert!(!err.contains("never-stored"), "{err}");
    let (code, _, _) = run(
        &["secret", "show", "--vault", &e.vault, "-n", "never-written"],
        &e.creds,
        "",
    );
    assert_eq!(code, 4, "the vault got a value for a refused synced secret");
    let list: Value =
        serde_json::from_str(&e.edge_ok(&["synced-secret", "list", "-o", "json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["edp1secrets", "pinned"]);

    // An endpoint names <synced-secret>/<key>; a missing key is refused.
    let (code, _, err) = e.edge(&[
        "endpoint",
        "create",
        "-n",
        "opcua-1",
        "--kind",
        "asset",
        "--address",
        "opc.tcp://plc:4840",
        "--auth",
        "username-password",
        "--username-secret",
        "edp1secrets/user",
        "--password-secret",
        "edp1secrets/password",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("InvalidSecretReference"), "{err}");
    e.edge_ok(&[
        "endpoint",
        "create",
        "-n",
        "opcua-1",
        "--kind",
        "asset",
        "--address",
        "opc.tcp://plc:4840",
        "--auth",
        "username-password",
        "--username-secret",
        "edp1secrets/username",
        "--password-secret",
        "edp1secrets/password",
    ]);
    let v = e.show("edp1secrets");
    assert_eq!(v["endpoints"], serde_json::json!(["opcua-1"]), "{v}");

    // Deleting a synced secret an endpoint uses is refused; forced, it goes at the edge only.
    let (code, _, err) = e.edge(&["synced-secret", "delete", "-n", "edp1secrets"]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("SyncedSecretInUse") && err.contains("opcua-1"),
        "{err}"
    );
    assert_eq!(
        e.file("edp1secrets", "password").as_deref(),
        Some("pass-two")
    );
    e.edge_ok(&["synced-secret", "delete", "-n", "edp1secrets", "--force"]);
    assert!(!target.exists(), "the target dir stayed");
    let shown: Value = serde_json::from_str(&ok(
        &[
            "secret", "show", "--vault", &e.vault, "-n", "opc-pass", "-o", "json",
        ],
        &e.creds,
    ))
    .unwrap();
    assert_eq!(shown["value"], "pass-two", "the vault lost a secret");
    let ep: Value =
        serde_json::from_str(&e.edge_ok(&["endpoint", "show", "-n", "opcua-1", "-o", "json"]))
            .unwrap();
    assert_eq!(ep["status"]["state"], "Error", "{ep}");
    assert!(
        ep["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("ReferencedSecretMissing")
    );
    let audit = std::fs::read_to_string(e.agent_dir.join("edge-audit.jsonl")).unwrap();
    let forced: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["operationName"] == "SyncedSecretForcedDelete")
        .collect();
    assert_eq!(forced.len(), 1, "{audit}");
    assert_eq!(
        forced[0]["properties"]["endpointsLeftInError"][0],
        "opcua-1"
    );
    assert!(!audit.contains("pass-two") && !audit.contains("opc-operator"));

    // A source deleted in the vault leaves the edge target (default policy: remove).
    ok(
        &["secret", "delete", "--vault", &e.vault, "-n", "opc-user"],
        &e.creds,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.secrets_dir.join("pinned").exists() {
        assert!(
            Instant::now() < deadline,
            "the deleted source stayed at the edge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = e.show("pinned");
    assert_eq!(v["status"]["state"], "Error", "{v}");
    assert!(
        v["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("SourceDeleted"),
        "{v}"
    );

    // A disabled source: removed by default, kept with --keep-last-known.
    set_secret(&e.creds, &e.vault, "api-key", "key-one");
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "dropped",
        "--secret",
        "key=api-key",
    ]);
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "kept",
        "--secret",
        "key=api-key",
        "--keep-last-known",
    ]);
    ok(
        &[
            "secret",
            "set-attributes",
            "--vault",
            &e.vault,
            "-n",
            "api-key",
            "--enabled",
            "false",
        ],
        &e.creds,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.secrets_dir.join("dropped").exists() {
        assert!(
            Instant::now() < deadline,
            "the disabled source stayed at the edge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e.file("kept", "key").as_deref(), Some("key-one"));
    let v = e.show("kept");
    assert_eq!(v["status"]["items"][0]["state"], "Disabled", "{v}");

    // The local API wants its token; metrics are there.
    let r = reqwest::get(format!(
        "http://127.0.0.1:{}/api/synced-secrets",
        e.agent_port
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let m = e.metrics().await;
    assert!(
        metric(&m, "strongbox_agent_target_writes_total") >= 3.0,
        "{m}"
    );
    // Changes came through the feed (the rotation interval is the default 300 s).
    assert!(
        metric(&m, "strongbox_agent_sync_latency_seconds_count") >= 2.0,
        "{m}"
    );
    assert!(m.contains("strongbox_agent_cache_age_seconds"), "{m}");
    assert!(!m.contains("pass-two"));

    // The device identity loses its access policy: the edge keeps its values and says why.
    set_secret(&e.creds, &e.vault, "keep-me", "still-here");
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "guarded",
        "--secret",
        "v=keep-me",
    ]);
    let device: Value = serde_json::from_str(&ok(
        &["device", "show", "-n", "edge1", "-o", "json"],
        &e.creds,
    ))
    .unwrap();
    let principal = device["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &[
            "policy",
            "delete",
            "--vault",
            &e.vault,
            "--object-id",
            &principal,
        ],
        &e.creds,
    );
    e.edge_ok(&["synced-secret", "sync"]);
    let v = e.wait_state("guarded", "Error", 15).await;
    assert!(
        v["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("AccessLost"),
        "{v}"
    );
    assert_eq!(e.file("guarded", "v").as_deref(), Some("still-here"));
    ok(&["device", "recover-access", "-n", "edge1"], &e.creds);
    e.edge_ok(&["synced-secret", "sync"]);
    e.wait_state("guarded", "Synced", 15).await;
}

fn shown_version(e: &Edge, name: &str) -> String {
    let v: Value = serde_json::from_str(&ok(
        &[
            "secret", "show", "--vault", &e.vault, "-n", name, "-o", "json",
        ],
        &e.creds,
    ))
    .unwrap();
    v["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Seconds the uplink stays cut (a minute unless STRONGBOX_TEST_OUTAGE_SECS says otherwise).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("STRONGBOX_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

#[tokio::test]
async fn the_edge_serves_through_an_outage_and_converges_after_it() {
    // With PostgreSQL, a second server node on the same database stays up during the outage,
    // so the vault changes while the edge cannot see it; without, the change follows the return.
    let pg = strongbox_store_postgres::test_database_url("edgeoutage").await;
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple").unwrap();
    let p = pass.to_str().unwrap().to_string();
    let args: Vec<String> = match &pg {
        Some(url) => vec!["--store".into(), url.clone(), "--passphrase-file".into(), p],
        None => vec![],
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server_dir = dir.path().join("server");
    let mut server = Server::start(&server_dir, &args).await;
    let port = server.port;
    let mut e = Edge::new(&server, dir.path()).await;
    set_secret(&e.creds, &e.vault, "db-pass", "before-outage");
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "db",
        "--secret",
        "password=db-pass",
    ]);
    assert_eq!(e.file("db", "password").as_deref(), Some("before-outage"));
    let resource = format!("https://vault.localhost:{}", server.port);
    e.msi_token(&resource).await.unwrap();

    // Uplink cut.
    server.stop();
    let other = match &pg {
        Some(_) => Some(Server::start(&dir.path().join("server-b"), &args).await),
        None => None,
    };
    let started = Instant::now();
    let mut reads = 0;
    let mut restarted = false;
    let mut changed_meanwhile = false;
    while started.elapsed() < outage() {
        // Workloads keep reading the edge copy, every read whole and current.
        assert_eq!(e.file("db", "password").as_deref(), Some("before-outage"));
        reads += 1;
        if reads == 1 {
            // Local workloads still get a (cached) token from the agent.
            e.msi_token(&resource).await.unwrap();
        }
        if !restarted && started.elapsed() > outage() / 3 {
            // The agent restarts without uplink, on a wiped (tmpfs-like) secrets dir: the
            // target comes back from the sealed cache before any network call.
            e.agent = None;
            std::fs::remove_dir_all(&e.secrets_dir).unwrap();
            e.start_agent().await;
            e.wait_file("db", "password", Some("before-outage"), 10)
                .await;
            // A workload deletes the target while the uplink is down: it comes back from
            // the cache.
            // Workloads still get a token from the restarted agent (kept sealed).
            e.msi_token(&resource).await.unwrap();
            std::fs::remove_dir_all(e.secrets_dir.join("db")).unwrap();
            e.wait_file("db", "password", Some("before-outage"), 15)
                .await;
            restarted = true;
        }
        if let (Some(b), false) = (&other, changed_meanwhile) {
            let creds_b = dir.path().join("server-b/dev-credentials.json");
            set_secret(&creds_b, &e.vault, "db-pass", "changed-during-outage");
            let _ = b;
            changed_meanwhile = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reads > 10 && restarted);
    let v = e.show("db");
    assert_eq!(v["status"]["state"], "Stale", "{v}");
    assert!(v["status"]["since"].is_i64(), "{v}");
    let m = e.metrics().await;
    assert!(metric(&m, "strongbox_agent_stale_seconds") > 0.0, "{m}");

    // The server returns on the same address: the edge converges and reports Synced.
    drop(other);
    let server = Server::start_on(&server_dir, port, &args).await;
    if !changed_meanwhile {
        set_secret(&e.creds, &e.vault, "db-pass", "changed-during-outage");
    }
    e.wait_file("db", "password", Some("changed-during-outage"), 30)
        .await;
    e.wait_state("db", "Synced", 10).await;
    // Nothing of the value sits in the agent's data dir in the clear.
    for entry in walk(&e.agent_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("changed-during-outage") && !text.contains("before-outage"),
            "plaintext in {}",
            entry.display()
        );
    }
    drop(server);
}

#[tokio::test]
async fn without_the_change_feed_the_agent_polls_at_its_rotation_interval() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let mut e = Edge::with(
        &server,
        dir.path(),
        &["--no-change-feed", "--rotation-interval", "2"],
    )
    .await;
    set_secret(&e.creds, &e.vault, "poll-me", "first");
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "polled",
        "--secret",
        "v=poll-me",
    ]);
    assert_eq!(e.file("polled", "v").as_deref(), Some("first"));
    set_secret(&e.creds, &e.vault, "poll-me", "second");
    e.wait_file("polled", "v", Some("second"), 10).await;
    // Polled, not followed: no feed latency was observed.
    let m = e.metrics().await;
    assert_eq!(
        metric(&m, "strongbox_agent_sync_latency_seconds_count"),
        0.0,
        "{m}"
    );
    assert!(
        metric(&m, "strongbox_agent_target_writes_total") >= 2.0,
        "{m}"
    );
    // A damaged cache is set aside and rebuilt from the vault.
    e.agent = None;
    std::fs::write(e.agent_dir.join("edge-cache.sealed"), b"damaged").unwrap();
    e.start_agent().await;
    set_secret(&e.creds, &e.vault, "poll-me", "third");
    e.wait_file("polled", "v", Some("third"), 10).await;
    let aside = std::fs::read_dir(&e.agent_dir).unwrap().flatten().any(|f| {
        f.file_name()
            .to_string_lossy()
            .starts_with("edge-cache.unreadable-")
    });
    assert!(aside, "the damaged cache was not kept aside");
    // A damaged edge.json stops the engine, and the API says so (not "not activated").
    e.agent = None;
    std::fs::write(e.agent_dir.join("edge.json"), b"{").unwrap();
    e.start_agent().await;
    let (code, _, err) = e.edge(&["synced-secret", "list"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("SyncEngineNotStarted") && err.contains("edge.json"),
        "{err}"
    );
    assert_eq!(
        e.file("polled", "v").as_deref(),
        Some("third"),
        "targets stay"
    );
}

#[tokio::test]
async fn after_a_purged_vault_is_recovered_as_a_new_one_the_edge_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]).await;
    let e = Edge::new(&server, dir.path()).await;
    set_secret(&e.creds, &e.vault, "db-pass", "old-vault-value");
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "db",
        "--secret",
        "password=db-pass",
    ]);

    // The vault is lost (lock removed, deleted, purged): the edge keeps serving, and says why.
    ok(
        &[
            "lock",
            "delete",
            "-n",
            "strongbox-device-vault",
            "--vault",
            &e.vault,
        ],
        &e.creds,
    );
    ok(&["vault", "delete", "-n", &e.vault], &e.creds);
    ok(&["vault", "purge", "-n", &e.vault], &e.creds);
    e.edge_ok(&["synced-secret", "sync"]);
    let v = e.wait_state("db", "Error", 15).await;
    assert!(
        v["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("VaultNotFound"),
        "{v}"
    );
    assert_eq!(e.file("db", "password").as_deref(), Some("old-vault-value"));

    // Recovery makes a new vault; its secrets are synced from there without an agent restart.
    ok(
        &[
            "device",
            "recover-vault",
            "--name",
            "edge1",
            "--new-vault-name",
            "edge1-kv2",
        ],
        &e.creds,
    );
    let admin = oid_of(&server.admin_token().await);
    ok(
        &[
            "policy",
            "set",
            "--vault",
            "edge1-kv2",
            "--object-id",
            &admin,
            "--secret-permissions",
            "get,list,set",
        ],
        &e.creds,
    );
    set_secret(&e.creds, "edge1-kv2", "db-pass", "new-vault-value");
    e.edge_ok(&["synced-secret", "sync"]);
    e.wait_file("db", "password", Some("new-vault-value"), 30)
        .await;
    e.wait_state("db", "Synced", 10).await;
    // Later changes arrive through the new vault's feed.
    set_secret(&e.creds, "edge1-kv2", "db-pass", "newer-value");
    e.wait_file("db", "password", Some("newer-value"), 10).await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Against a real cluster when `KUBECONFIG` names one (with the rights to make namespaces,
/// ServiceAccounts, Roles and tokens). The agent runs as a ServiceAccount whose Role allows
/// Secrets in one namespace only. The API server outage step runs when
/// `STRONGBOX_TEST_K8S_STOP` and `STRONGBOX_TEST_K8S_START` hold shell commands that stop and
/// start the cluster's API server (e.g. `docker stop kind-control-plane` / `docker start …`).
#[tokio::test]
async fn kubernetes_target_as_a_service_account_limited_to_one_namespace() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
    use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipped: KUBECONFIG not set");
        return;
    }
    let admin = kube::Client::try_default().await.unwrap();
    let suffix = &strongbox_crypto::random_hex_id()[..8];
    let ns = format!("sbx-edge-{suffix}");
    let other = format!("sbx-other-{suffix}");
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    };
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for n in [&ns, &other] {
        namespaces
            .create(
                &pp,
                &Namespace {
                    metadata: meta(n),
                    ..Namespace::default()
                },
            )
            .await
            .unwrap();
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    sas.create(
        &pp,
        &ServiceAccount {
            metadata: meta("strongbox-agent"),
            ..ServiceAccount::default()
        },
    )
    .await
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(
            &pp,
            &Role {
                metadata: meta("strongbox-agent"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["secrets".into()]),
                    verbs: [
                        "get", "list", "watch", "create", "patch", "update", "delete",
                    ]
                    .map(String::from)
                    .to_vec(),
                    ..PolicyRule::default()
                }]),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(
            &pp,
            &RoleBinding {
                metadata: meta("strongbox-agent"),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: "strongbox-agent".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "strongbox-agent".into(),
                    namespace: Some(ns.clone()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .unwrap();
    let token = sas
        .create_token_request(
            "strongbox-agent",
            &pp,
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    // The agent's kubeconfig: the admin's cluster, the ServiceAccount's token.
    let kc = kube::config::Kubeconfig::read().unwrap();
    let ctx_name = kc.current_context.clone().unwrap();
    let ctx = kc.contexts.iter().find(|c| c.name == ctx_name).unwrap();
    let cluster_name = ctx.context.as_ref().unwrap().cluster.clone();
    let cluster = kc.clusters.iter().find(|c| c.name == cluster_name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sa_config = dir.path().join("agent-kubeconfig.json");
    std::fs::write(
        &sa_config,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [serde_json::to_value(cluster).unwrap()],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": cluster_name, "user": "sa", "namespace": ns}}],
            "current-context": "sa",
        })
        .to_string(),
    )
    .unwrap();

    let server = Server::start(&dir.path().join("server"), &[]).await;
    let e = Edge::with_env(
        &server,
        dir.path(),
        &[],
        &[("KUBECONFIG", sa_config.to_str().unwrap())],
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let data =
        |s: &Secret, k: &str| String::from_utf8(s.data.as_ref().unwrap()[k].0.clone()).unwrap();
    // basic-auth, tls and Opaque: each valid on its first write, delivered as the agent's SA.
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, &str, Pairs); 3] = [
        (
            "edp1",
            "basic-auth",
            &[("username", "opc-operator"), ("password", "pass-one")],
        ),
        (
            "web-tls",
            "tls",
            &[
                ("tls.crt", "-----BEGIN CERTIFICATE-----"),
                ("tls.key", "-----BEGIN PRIVATE KEY-----"),
            ],
        ),
        ("plain", "opaque", &[("config.yaml", "a: 1")]),
    ];
    for (name, ty, pairs) in cases {
        let values = dir.path().join(format!("{name}.json"));
        let obj: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        std::fs::write(&values, Value::Object(obj).to_string()).unwrap();
        let mut args = vec![
            "synced-secret",
            "create",
            "-n",
            name,
            "--type",
            ty,
            "--kube-namespace",
            &ns,
        ];
        let refs: Vec<String> = pairs
            .iter()
            .map(|(k, _)| format!("{k}={name}-{}", k.replace('.', "-")))
            .collect();
        for r in &refs {
            args.extend(["--secret", r]);
        }
        args.extend(["--values-file", values.to_str().unwrap()]);
        e.edge_ok(&args);
        let s = secrets.get(name).await.unwrap();
        for (k, v) in pairs {
            assert_eq!(data(&s, k), *v, "{name}/{k}");
        }
    }

    // A foreign Secret holding a synced secret's name: left alone; deleting the synced secret
    // succeeds with a warning.
    secrets
        .create(
            &pp,
            &Secret {
                metadata: meta("theirs"),
                data: Some([("k".to_string(), k8s_openapi::ByteString(b"theirs".to_vec()))].into()),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "theirs",
        "--secret",
        "k=plain-config-yaml",
        "--kube-namespace",
        &ns,
        "--wait",
        "0",
    ]);
    let v = e.wait_state("theirs", "Error", 20).await;
    assert!(
        v["status"]["reason"].as_str().unwrap().contains("not ours"),
        "{v}"
    );
    let (code, _, err) = e.edge(&["synced-secret", "delete", "-n", "theirs"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning:"), "{err}");
    assert_eq!(data(&secrets.get("theirs").await.unwrap(), "k"), "theirs");

    // A namespace the Role does not cover: Error with the API server's reason, nothing there.
    e.edge_ok(&[
        "synced-secret",
        "add-from-vault",
        "-n",
        "elsewhere",
        "--secret",
        "k=plain-config-yaml",
        "--kube-namespace",
        &other,
        "--wait",
        "0",
    ]);
    let v = e.wait_state("elsewhere", "Error", 20).await;
    assert!(
        v["status"]["reason"].as_str().unwrap().contains("403"),
        "{v}"
    );
    let there: Api<Secret> = Api::namespaced(admin.clone(), &other);
    assert!(there.get_opt("elsewhere").await.unwrap().is_none());

    // A Secret of ours deleted by hand is back within 10 s.
    secrets
        .delete("edp1", &DeleteParams::default())
        .await
        .unwrap();
    let gone = Instant::now();
    loop {
        if secrets.get_opt("edp1").await.unwrap().is_some() {
            break;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "not put back in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("deleted Secret put back after {:?}", gone.elapsed());

    // The API server stopped and started: Stale meanwhile, Synced within 10 s of it answering.
    if let (Ok(stop), Ok(start)) = (
        std::env::var("STRONGBOX_TEST_K8S_STOP"),
        std::env::var("STRONGBOX_TEST_K8S_START"),
    ) {
        let sh = |c: &str| {
            assert!(
                Command::new("sh")
                    .args(["-c", c])
                    .status()
                    .unwrap()
                    .success(),
                "{c}"
            )
        };
        sh(&stop);
        e.edge_ok(&["synced-secret", "sync"]);
        e.wait_state("plain", "Stale", 60).await;
        sh(&start);
        while admin.apiserver_version().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let back = Instant::now();
        e.wait_state("plain", "Synced", 10).await;
        println!(
            "Synced {:?} after the API server answered again",
            back.elapsed()
        );
    } else {
        println!(
            "API server restart step skipped: set STRONGBOX_TEST_K8S_STOP and STRONGBOX_TEST_K8S_START"
        );
    }
    for n in [&ns, &other] {
        namespaces.delete(n, &DeleteParams::default()).await.ok();
    }
}
