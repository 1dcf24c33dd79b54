//! Running the client commands of the real binary against a real server: credentials from the
//! server's dev-credentials.json (through STRONGBOX_CREDENTIALS), a private config dir, stdin.

use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Out {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.out, self.err))
    }
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.out, self.err);
        self
    }
    /// The one error line, `error: CODE: message`.
    #[track_caller]
    pub fn fails(self, code: i32, error_code: &str) -> Out {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.out, self.err
        );
        let line = self.err.trim_end();
        assert!(
            !line.contains('\n') && line.starts_with(&format!("error: {error_code}: ")),
            "expected one line 'error: {error_code}: …', got {line:?}"
        );
        self
    }
}

impl Out {
    /// A usage error found by the argument parser: exit 2, `error: …` first.
    #[track_caller]
    pub fn fails_usage(self) -> Out {
        assert_eq!(self.code, 2, "stdout: {}\nstderr: {}", self.out, self.err);
        assert!(self.err.starts_with("error: "), "{}", self.err);
        self
    }
}

/// The client side of one server: its credentials file and a config dir of its own.
pub struct Sb {
    pub creds: PathBuf,
    pub config: tempfile::TempDir,
    pub data_dir: PathBuf,
}

impl Sb {
    pub fn new(data_dir: &Path) -> Sb {
        Sb {
            creds: data_dir.join("dev-credentials.json"),
            config: tempfile::tempdir().unwrap(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_remove("AZURE_CLIENT_SECRET")
            .env("STRONGBOX_CREDENTIALS", &self.creds)
            .env("STRONGBOX_CONFIG_DIR", self.config.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut c = self.command(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
        drop(input);
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs an offline admin command on the server's data dir.
    pub fn admin(&self, args: &[&str]) -> Out {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", self.data_dir.to_str().unwrap()]);
        self.run(&all)
    }
}

/// A service principal made offline, with a policy on `dev` (if permissions are given).
pub fn principal(sb: &Sb, name: &str, dev_permissions: Option<&str>) -> Value {
    let sp = sb.admin(&["sp", "create", "--name", name]).ok().json();
    if let Some(p) = dev_permissions {
        sb.admin(&[
            "policy",
            "set",
            "--vault",
            "dev",
            "--object-id",
            sp["object_id"].as_str().unwrap(),
            "--secret-permissions",
            p,
        ])
        .ok();
    }
    sp
}

/// A credentials file for another principal of the same server.
pub fn creds_for(server: &Server, dir: &Path, sp: &Value) -> PathBuf {
    let mut c = server.creds.clone();
    c["client_id"] = sp["client_id"].clone();
    c["client_secret"] = sp["client_secret"].clone();
    let path = dir.join(format!("creds-{}.json", sp["client_id"].as_str().unwrap()));
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    path
}

/// The object id in a token (its `oid` claim).
pub fn oid_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["oid"].as_str().unwrap().to_string()
}

/// A management-plane token for the given client.
pub async fn mgmt_token(server: &Server, client_id: &str, secret: &str) -> String {
    let tenant = server.creds["tenant_id"].as_str().unwrap();
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/{tenant}/oauth2/v2.0/token",
            server.port
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            (
                "scope",
                &format!("https://localhost:{}/.default", server.port),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn admin_mgmt_token(server: &Server) -> String {
    mgmt_token(
        server,
        server.creds["client_id"].as_str().unwrap(),
        server.creds["client_secret"].as_str().unwrap(),
    )
    .await
}

/// A raw management request: (status, JSON body or Null).
pub async fn mgmt(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path_and_query: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = server
        .client
        .request(
            method,
            format!("https://localhost:{}{path_and_query}", server.port),
        )
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn vault_id(server: &Server, vault: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/strongbox-dev/providers/Microsoft.KeyVault/vaults/{vault}",
        server.creds["subscription_id"].as_str().unwrap()
    )
}

pub async fn advance_clock(server: &Server, secs: i64) {
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/_dev/clock?advance_secs={secs}",
            server.port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
