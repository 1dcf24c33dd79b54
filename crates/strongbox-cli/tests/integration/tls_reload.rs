//! The operator's certificate (`--tls-cert`, `--tls-key`, `--tls-ca`) is served and replaced
//! without a restart: after the files change (or on SIGHUP) new connections get the new
//! certificate while a connection already open keeps working; a pair that does not load leaves
//! the previous one served.

use crate::common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.clone().self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A server certificate for the loopback names, signed by `ca`: (chain PEM, key PEM, leaf DER).
fn leaf(ca: &Ca, cn: &str) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![
        "localhost".to_string(),
        "vault.localhost".to_string(),
        "*.vault.localhost".to_string(),
    ])
    .unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let issuer = Issuer::new(ca.params.clone(), &ca.key);
    let cert = p.signed_by(&key, &issuer).unwrap();
    (
        format!("{}{}", cert.pem(), ca.pem),
        key.serialize_pem(),
        cert.der().to_vec(),
    )
}

/// Replaces a file the way deploy tools do: a new file renamed over the old.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn install(dir: &Path, (chain, key, _): &(String, String, Vec<u8>)) {
    replace(&dir.join("key.pem"), key);
    replace(&dir.join("cert.pem"), chain);
}

/// One TLS connection kept open, speaking HTTP/1.1 keep-alive.
struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Conn {
    fn open(port: u16, ca_pem: &str) -> Conn {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
            let c: CertificateDer = c.unwrap();
            roots.add(c).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Conn {
            tls: rustls::StreamOwned::new(conn, tcp),
        };
        assert_eq!(c.get_healthz(), 200);
        c
    }

    fn leaf(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// `GET /healthz` on this connection; the status code.
    fn get_healthz(&mut self) -> u16 {
        self.tls
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Headers, then the Content-Length body.
        loop {
            let n = self.tls.read(&mut chunk).unwrap();
            assert!(n > 0, "the connection was closed");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return text[9..12].parse().unwrap();
                }
            }
        }
    }
}

/// Waits until a new connection is served `want`.
fn wait_for_leaf(port: u16, ca_pem: &str, want: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    while Conn::open(port, ca_pem).leaf() != want {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = ca();
    std::fs::write(certs.join("ca.pem"), &ca.pem).unwrap();
    let first = leaf(&ca, "first");
    let second = leaf(&ca, "second");
    install(&certs, &first);
    let arg = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let mut sb = Server::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &arg("cert.pem"),
            "--tls-key",
            &arg("key.pem"),
            "--tls-ca",
            &arg("ca.pem"),
        ],
    )
    .await;
    // Clients are pointed at the operator's CA.
    assert_eq!(
        std::fs::read_to_string(sb.creds["ca_cert"].as_str().unwrap()).unwrap(),
        ca.pem
    );
    let port = sb.port;
    let pem = ca.pem.clone();
    let (first_der, second_der) = (first.2.clone(), second.2.clone());
    let certs2 = certs.clone();
    tokio::task::spawn_blocking(move || {
        let mut kept = Conn::open(port, &pem);
        assert_eq!(kept.leaf(), first_der);

        // Renewed on disk: picked up by the periodic check.
        install(&certs2, &second);
        wait_for_leaf(port, &pem, &second_der, Duration::from_secs(15));
        // The connection opened before the renewal still works, with its certificate.
        assert_eq!(kept.get_healthz(), 200);
        assert_eq!(kept.leaf(), first_der);

        // A pair that does not load is refused; the previous one stays served.
        replace(&certs2.join("cert.pem"), "not a certificate");
        std::thread::sleep(Duration::from_secs(7));
        assert_eq!(Conn::open(port, &pem).leaf(), second_der);
        assert_eq!(kept.get_healthz(), 200);
    })
    .await
    .unwrap();

    // SIGHUP asks for the files at once, and does not stop the server.
    install(&certs, &first);
    let pid = sb.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let pem = ca.pem.clone();
    let first_der = first.2.clone();
    tokio::task::spawn_blocking(move || {
        wait_for_leaf(port, &pem, &first_der, Duration::from_secs(15))
    })
    .await
    .unwrap();
    assert!(
        sb.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    let log = std::fs::read_to_string(dir.path().join("data").join(format!("server-{port}.log")))
        .unwrap_or_default();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(log.contains("does not load"), "{log}");
    sb.stop();
}
