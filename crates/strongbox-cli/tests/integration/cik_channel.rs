//! The CIK channel with a real server and real `strongbox agent run` processes (issue 17): the
//! replay record that `agent receive` keeps survives a running agent's polls, its restarts,
//! racing receives and kill -9; binary values travel byte for byte and never in the clear.

use crate::cli_support::oid_of;
use crate::common::*;
use crate::device_sync::{admin_secret, admin_set, ok, run};
use crate::durability::files_containing;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strongbox_agent::state::StateDir;

/// A server, one activated device (`edge1`) and the admin allowed to read and set secrets in the
/// device's vault (to look at envelopes and put old ones back).
struct Rig {
    dir: tempfile::TempDir,
    _server: Server,
    creds: PathBuf,
    ca: String,
    agent_dir: PathBuf,
    vault: String,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("server"), &[]).await;
        let creds = dir.path().join("server/dev-credentials.json");
        let ca = server.creds["ca_cert"].as_str().unwrap().to_string();
        let agent_dir = dir.path().join("agent");
        let c = Some(creds.as_path());
        ok(&["device", "create", "-n", "edge1"], c);
        let key = ok(&["device", "activation-key", "-n", "edge1"], c);
        ok(
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
        );
        let shown: Value =
            serde_json::from_str(&ok(&["device", "show", "-n", "edge1", "-o", "json"], c)).unwrap();
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
                "get,list,set",
            ],
            c,
        );
        Rig {
            dir,
            _server: server,
            creds,
            ca,
            agent_dir,
            vault,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `device send-secret` of `value` (stdin); returns the server's answer.
    fn send(&self, name: &str, value: &str) -> Value {
        self.send_with(name, &[], value)
    }

    /// `device send-secret` of a file, with `extra` arguments.
    fn send_file(&self, name: &str, file: &Path, extra: &[&str]) -> Value {
        let mut args = vec!["--file", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.send_with(name, &args, "")
    }

    fn send_with(&self, name: &str, extra: &[&str], stdin: &str) -> Value {
        let mut args = vec![
            "device",
            "send-secret",
            "-n",
            "edge1",
            "--secret-name",
            name,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", "json"]);
        let (code, out, err) = run(&args, Some(&self.creds), Some(stdin));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// `agent receive` into `out`: (exit code, stdout, stderr).
    fn receive(&self, name: &str, out: &Path) -> (i32, String, String) {
        receive(&self.agent_dir, name, out)
    }

    /// The envelope the vault holds now under `name`.
    fn envelope(&self, name: &str) -> String {
        let (value, content_type) = admin_secret(&self.vault, name, Some(&self.creds));
        assert_eq!(content_type, "application/vnd.strongbox.cik-envelope");
        value
    }

    /// Puts `envelope` back as the latest version of `name` (what a replay does).
    fn put_back(&self, name: &str, envelope: &str) {
        admin_set(&self.vault, name, envelope, Some(&self.creds));
    }

    /// Starts `strongbox agent run` polling every second; waits until its page answers.
    async fn start_agent(&self) -> Kill {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["agent", "run", "--data-dir"])
            .arg(&self.agent_dir)
            .args(["--server-ca", &self.ca, "--port", &port.to_string()])
            .args(["--poll-interval", "1", "--msi-challenge-dir"])
            .arg(self.path("challenges"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child = Kill(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the agent page did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child
    }

    /// The device state as stored (opened with the device's key, as the agent opens it).
    fn state(&self) -> strongbox_agent::state::DeviceState {
        StateDir::open(&self.agent_dir)
            .unwrap()
            .load()
            .unwrap()
            .unwrap()
    }

    /// Returns once the running agent finished two more device-secrets polls (each one writes
    /// `lastSyncAt`, in seconds, with a 1 s interval).
    async fn wait_two_polls(&self) {
        let start = self.state().last_sync_at.unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.state().last_sync_at.unwrap_or(0) < start + 2 {
            assert!(Instant::now() < deadline, "the agent stopped polling");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn receive(agent_dir: &Path, name: &str, out: &Path) -> (i32, String, String) {
    run(
        &[
            "agent",
            "receive",
            "--data-dir",
            agent_dir.to_str().unwrap(),
            "--secret-name",
            name,
            "--out",
            out.to_str().unwrap(),
        ],
        None,
        None,
    )
}

fn assert_replay_refused(r: &Rig, name: &str, out: &Path, kept: &str) {
    let (code, _, err) = r.receive(name, out);
    assert_ne!(code, 0, "a replay of {name} was accepted");
    assert!(
        err.contains("EnvelopeRefused") && err.contains("replay"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(out).unwrap(), kept, "{name}");
}

/// Sends "one" then "two" under `name`, receives "two" into `out`; returns the first envelope.
fn send_one_two_receive(r: &Rig, name: &str, out: &Path) -> String {
    r.send(name, "one");
    let first = r.envelope(name);
    r.send(name, "two");
    let (code, _, err) = r.receive(name, out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "two");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_refused_while_the_agent_polls_after_its_restart_and_with_racing_receives() {
    let r = Rig::new().await;
    let agent = r.start_agent().await;
    // A second agent on the same data dir would be a second writer: refused.
    let (code, _, err) = run(
        &[
            "agent",
            "run",
            "--data-dir",
            r.agent_dir.to_str().unwrap(),
            "--port",
            "0",
        ],
        None,
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("another `strongbox agent run`"), "{err}");

    // Agent running: the replay is refused before its next poll and after two of them (the
    // polls used to write back the agent's stale copy of the state, dropping the record).
    let out = r.path("running.txt");
    let first = send_one_two_receive(&r, "running", &out);
    r.put_back("running", &first);
    assert_replay_refused(&r, "running", &out, "two");
    r.wait_two_polls().await;
    assert_replay_refused(&r, "running", &out, "two");

    // The agent restarted between the two sends.
    let out = r.path("restarted.txt");
    r.send("restarted", "one");
    let first = r.envelope("restarted");
    drop(agent);
    let _agent = r.start_agent().await;
    r.send("restarted", "two");
    let (code, _, err) = r.receive("restarted", &out);
    assert_eq!(code, 0, "{err}");
    r.wait_two_polls().await;
    r.put_back("restarted", &first);
    assert_replay_refused(&r, "restarted", &out, "two");
    // The first name's record survived the restart too.
    assert_replay_refused(&r, "running", &r.path("running.txt"), "two");

    // Two receives racing, for the newest envelope (both take it) and for a replay (both
    // refuse it), while the agent keeps polling.
    let out = r.path("race.txt");
    r.send("race", "one");
    let first = r.envelope("race");
    r.send("race", "two");
    let racing = |r: &Rig| {
        std::thread::scope(|s| {
            let a = s.spawn(|| r.receive("race", &r.path("race-a.txt")));
            let b = s.spawn(|| r.receive("race", &r.path("race-b.txt")));
            [a.join().unwrap(), b.join().unwrap()]
        })
    };
    for (code, _, err) in racing(&r) {
        assert_eq!(code, 0, "{err}");
    }
    std::fs::copy(r.path("race-a.txt"), &out).unwrap();
    r.wait_two_polls().await;
    r.put_back("race", &first);
    for (code, _, err) in racing(&r) {
        assert_ne!(code, 0);
        assert!(err.contains("replay"), "{err}");
    }
    for f in ["race-a.txt", "race-b.txt", "race.txt"] {
        assert_eq!(std::fs::read_to_string(r.path(f)).unwrap(), "two", "{f}");
    }
    let seqs = r.state().envelope_seqs.clone();
    assert_eq!(seqs.len(), 3, "{seqs:?}");
}

#[tokio::test]
async fn binary_values_travel_byte_for_byte_sealed_and_a_tampered_one_is_refused() {
    let r = Rig::new().await;
    // A random 4 KB file: not UTF-8, so it goes as application/octet-stream.
    let mut random = vec![0u8; 4096];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    random[0] = 0xff;
    let input = r.path("random.bin");
    std::fs::write(&input, &random).unwrap();
    let sent = r.send_file("blob", &input, &[]);
    assert_eq!(sent["valueContentType"], "application/octet-stream");
    let got = r.path("random.out");
    let (code, out, err) = r.receive("blob", &got);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("4096 bytes, application/octet-stream"),
        "{out}"
    );
    assert_eq!(std::fs::read(&got).unwrap(), random);
    let blob_envelope = r.envelope("blob");
    assert!(blob_envelope.starts_with("sbcik3."), "{blob_envelope}");

    // A PKCS#12 file made by openssl, with its content type.
    let (key, cert, pfx_path) = (r.path("k.pem"), r.path("c.pem"), r.path("cert.pfx"));
    // Paths in the temp dir hold no spaces: one string per command reads best.
    let openssl = |args: String| {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (key, cert, pfx) = (key.display(), cert.display(), pfx_path.display());
    openssl(format!(
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=edge1 -keyout {key} -out {cert}"
    ));
    openssl(format!(
        "pkcs12 -export -inkey {key} -in {cert} -out {pfx} -passout pass:pfx-pass"
    ));
    let pfx_bytes = std::fs::read(&pfx_path).unwrap();
    let sent = r.send_file(
        "tls-pfx",
        &pfx_path,
        &["--content-type", "application/x-pkcs12"],
    );
    assert_eq!(sent["valueContentType"], "application/x-pkcs12");
    let got_pfx = r.path("got.pfx");
    let (code, out, err) = r.receive("tls-pfx", &got_pfx);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("application/x-pkcs12"), "{out}");
    assert_eq!(std::fs::read(&got_pfx).unwrap(), pfx_bytes);
    openssl(format!(
        "pkcs12 -in {} -passin pass:pfx-pass -noout",
        got_pfx.display()
    ));

    // Text stays text: the form every agent reads, written back as the same bytes.
    let text = r.path("share.txt");
    std::fs::write(&text, "user=ops password=Corr3ct-H0rse").unwrap();
    let sent = r.send_file("share", &text, &[]);
    assert!(sent["valueContentType"].is_null(), "{sent}");
    assert!(r.envelope("share").starts_with("sbcik2."));
    let (code, out, err) = r.receive("share", &r.path("share.out"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(text,"), "{out}");
    assert_eq!(
        std::fs::read(r.path("share.out")).unwrap(),
        std::fs::read(&text).unwrap()
    );

    // One changed character in the binary envelope: refused, nothing written.
    let mut tampered = blob_envelope.into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    r.put_back("blob", std::str::from_utf8(&tampered).unwrap());
    let bad = r.path("bad.bin");
    let (code, _, err) = r.receive("blob", &bad);
    assert_ne!(code, 0);
    assert!(err.contains("did not open"), "{err}");
    assert!(!bad.exists());

    // Bad input is refused in the API's error shape before anything is sent.
    let (code, _, err) = run(
        &["device", "send-secret", "-n", "edge1", "--secret-name", "x"]
            .into_iter()
            .chain(["--content-type", ""])
            .collect::<Vec<_>>(),
        Some(&r.creds),
        Some("x"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("contentType must be"), "{err}");

    // Neither value is anywhere in the clear: not in the server's store, WAL or logs, not in the
    // agent's data dir; neither as bytes nor as the base64 that went over the wire.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for bytes in [&random, &pfx_bytes] {
        let middle = &bytes[bytes.len() / 2..bytes.len() / 2 + 32];
        let encoded = b64.encode(bytes);
        for dir in [r.path("server"), r.agent_dir.clone()] {
            let hits = files_containing(&dir, middle);
            assert!(hits.is_empty(), "plaintext bytes in {hits:?}");
            let hits = files_containing(&dir, &encoded.as_bytes()[100..160]);
            assert!(hits.is_empty(), "base64 of the value in {hits:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_9_while_receives_change_state_keeps_every_acknowledged_change() {
    let r = Rig::new().await;
    // An agent polling every second (each poll writes the state), killed with SIGKILL at
    // varying moments (starting up, polling, writing, idle) and started again, until the CLI
    // loop below is done.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let killed = std::sync::atomic::AtomicUsize::new(0);
    let kills = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let mut kills = 0;
            for pause in [350u64, 900, 1500, 600, 1200, 250].iter().cycle() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let agent = Kill(
                    Command::new(BIN)
                        .args(["agent", "run", "--data-dir"])
                        .arg(&r.agent_dir)
                        .args(["--server-ca", &r.ca, "--port", "0"])
                        .args(["--poll-interval", "1", "--msi-challenge-dir"])
                        .arg(r.path("challenges"))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                );
                std::thread::sleep(Duration::from_millis(*pause));
                drop(agent);
                kills += 1;
                killed.store(kills, std::sync::atomic::Ordering::SeqCst);
            }
            kills
        });
        // At least 12 acknowledged changes, and on until the agent was killed 3 times (a fast
        // machine finishes 12 before the third kill).
        let mut acked = Vec::new();
        for i in 0.. {
            if i >= 12 && killed.load(std::sync::atomic::Ordering::SeqCst) >= 3 {
                break;
            }
            assert!(
                i < 500,
                "the agent was not killed 3 times during 500 changes"
            );
            let name = format!("crash-{i}");
            let seq = r.send(&name, &format!("value-{i}"))["envelopeSequence"]
                .as_u64()
                .unwrap();
            let (code, _, err) = r.receive(&name, &r.path("crash.out"));
            assert_eq!(code, 0, "{err}");
            acked.push((name, seq));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (killer.join().unwrap(), acked)
    });
    let (kills, acked) = kills;
    assert!(kills >= 3, "the agent was killed {kills} times");
    // The state opens and holds every acknowledged receive's record.
    let seqs = r.state().envelope_seqs.clone();
    for (name, seq) in &acked {
        assert_eq!(seqs.get(name), Some(seq), "{name}: {seqs:?}");
    }
    // An old envelope put back under any of them is still refused, and the agent runs again.
    let _agent = r.start_agent().await;
    r.wait_two_polls().await;
    r.send("crash-0", "newer");
    let newer = r.envelope("crash-0");
    let out = r.path("crash-0.out");
    let (code, _, err) = r.receive("crash-0", &out);
    assert_eq!(code, 0, "{err}");
    r.send("crash-0", "newest");
    r.receive("crash-0", &out);
    r.put_back("crash-0", &newer);
    assert_replay_refused(&r, "crash-0", &out, "newest");
}
