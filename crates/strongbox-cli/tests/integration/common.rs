//! Runs the real `strongbox` binary over HTTPS on a free loopback port, with its own data dir.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_strongbox");

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub creds: Value,
    pub client: reqwest::Client,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `strongbox server --dev` on `dir` with extra args, waits until it answers.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_on(dir, free_port(), extra).await
    }

    /// Starts on a given port: a restart on the same data dir keeps the URLs clients hold.
    pub async fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Server {
        // The log lives in the data dir, so the plaintext scan covers it too.
        let log = dir.join(format!("server-{port}.log"));
        std::fs::create_dir_all(dir).unwrap();
        // Appending, as a log file is usually opened: each line needs room at the end of the file.
        std::fs::File::create(&log).unwrap();
        let log_file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let mut child = Command::new(BIN)
            .args(["server", "--dev", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(text) = std::fs::read_to_string(dir.join("dev-credentials.json"))
                && let Ok(creds) = serde_json::from_str::<Value>(&text)
                && creds["authority"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(&format!(":{port}")))
            {
                let client = client_for(&creds, port);
                if client
                    .get(format!("https://localhost:{port}/healthz"))
                    .send()
                    .await
                    .is_ok()
                {
                    return Server {
                        child,
                        port,
                        creds,
                        client,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn vault_url(&self, vault: &str) -> String {
        format!("https://{vault}.vault.localhost:{}", self.port)
    }

    /// A token request with client credentials, answered however the server answers.
    pub async fn token_response(&self, client_id: &str, secret: &str) -> reqwest::Response {
        let tenant = self.creds["tenant_id"].as_str().unwrap();
        self.client
            .post(format!(
                "https://localhost:{}/{tenant}/oauth2/v2.0/token",
                self.port
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                (
                    "scope",
                    &format!("https://vault.localhost:{}/.default", self.port),
                ),
            ])
            .send()
            .await
            .unwrap()
    }

    /// A token for the dev admin (or the given client credentials).
    pub async fn token_for(&self, client_id: &str, secret: &str) -> String {
        let resp = self.token_response(client_id, secret).await;
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.token_for(
            self.creds["client_id"].as_str().unwrap(),
            self.creds["client_secret"].as_str().unwrap(),
        )
        .await
    }

    /// Sends a data-plane request to vault `dev` with api-version 7.6.
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut req = self
            .client
            .request(
                method,
                format!("{}{path}{sep}api-version=7.6", self.vault_url("dev")),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client_for(creds: &Value, port: u16) -> reqwest::Client {
    let ca = std::fs::read(creds["ca_cert"].as_str().unwrap()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("dev.vault.localhost", addr)
        .resolve("other.vault.localhost", addr)
        .resolve("nosuch.vault.localhost", addr)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs the CLI with args; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn random_value() -> String {
    format!("s3cr3t-{}", uuid_like())
}

pub fn uuid_like() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Kills and reaps a child process (an agent) when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the CLI with `--credentials creds` and `stdin`; returns (exit code, stdout, stderr).
pub fn cli_with(args: &[&str], creds: &Path, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--credentials")
        .arg(creds)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
