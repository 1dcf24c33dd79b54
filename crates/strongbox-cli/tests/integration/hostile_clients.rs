//! Slow and idle clients against the real listener: a slowloris client is cut off within the
//! header-read timeout, a flood of idle TLS connections is bounded by the connection limit and
//! closed by the idle timeout, and meanwhile a normal client is served promptly.

use crate::common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_config(server: &Server) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(server.creds["ca_cert"].as_str().unwrap()).unwrap();
    roots.add(ca).unwrap();
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection with the handshake done, or None if the server closed it first.
fn connect(port: u16, config: &Arc<rustls::ClientConfig>) -> Option<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    Some(tls)
}

/// Whether the server has closed the connection: a read ends or fails (a read that merely
/// times out does not count).
fn closed_by_server(tls: &mut Tls) -> bool {
    let mut buf = [0u8; 256];
    match tls.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Sockets the server process holds open.
fn server_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// A normal client: a request every 50 ms on its pooled connection until `stop`; returns the
/// slowest answer. Every request must succeed.
fn normal_client(server: &Server, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Duration> {
    let (client, url) = (
        server.client.clone(),
        format!("https://localhost:{}/healthz", server.port),
    );
    tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let resp = client.get(&url).send().await.expect("normal client served");
            assert_eq!(resp.status(), 200);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--header-read-timeout-secs", "2"]).await;
    let config = tls_config(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let normal = normal_client(&server, stop.clone());

    // 50 clients that send one header line a second and never finish their headers.
    let port = server.port;
    let slow: Vec<_> = (0..50)
        .map(|i| {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut tls = connect(port, &config).expect("handshake");
                let started = Instant::now();
                let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
                if tls
                    .write_all(request.as_bytes())
                    .and_then(|_| tls.flush())
                    .is_err()
                {
                    return started.elapsed();
                }
                // A line a second; between lines, watch for the server closing the connection.
                tls.sock
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                for n in 0..30 {
                    if closed_by_server(&mut tls) {
                        break;
                    }
                    let line = format!("X-Slow-{i}-{n}: yes\r\n");
                    if tls
                        .write_all(line.as_bytes())
                        .and_then(|_| tls.flush())
                        .is_err()
                    {
                        break;
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    let held: Vec<Duration> =
        tokio::task::spawn_blocking(move || slow.into_iter().map(|t| t.join().unwrap()).collect())
            .await
            .unwrap();
    stop.store(true, Ordering::SeqCst);
    let slowest_normal = normal.await.unwrap();

    let longest = held.iter().max().unwrap();
    // Cut off at the 2 s header timeout (plus scheduling slack), not after 30 lines.
    assert!(
        *longest < Duration::from_secs(3),
        "a slowloris connection was held {longest:?}"
    );
    assert!(
        *held.iter().min().unwrap() >= Duration::from_millis(1500),
        "{held:?}"
    );
    assert!(
        slowest_normal < Duration::from_secs(1),
        "normal client waited {slowest_normal:?}"
    );
    eprintln!(
        "slowloris: 50 held {:?}..{longest:?}; normal client slowest {slowest_normal:?}",
        held.iter().min().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_is_bounded_and_closed_while_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--max-connections",
            "200",
            "--idle-timeout-secs",
            "3",
            "--header-read-timeout-secs",
            "30",
        ],
    )
    .await;
    let config = tls_config(&server);
    let pid = server.child.id();
    let baseline = server_sockets(pid);
    let stop = Arc::new(AtomicBool::new(false));
    // The normal client holds its connection before the flood and keeps it busy.
    let normal = normal_client(&server, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2,000 TLS connections that never send a request, from 8 threads; each keeps what it got.
    let port = server.port;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || {
                (0..250)
                    .filter_map(|_| connect(port, &config))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut peak = 0;
    while flood.iter().any(|t| !t.is_finished()) {
        peak = peak.max(server_sockets(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut held: Vec<Tls> = flood.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let handshakes = held.len();
    // The limit bounds what the server holds: 200 slots, plus refused sockets in the instant
    // between their accept and their close.
    assert!(
        peak <= baseline + 200 + 16,
        "server held {peak} sockets (baseline {baseline})"
    );

    // The idle timeout (3 s) closes every one of them; the server lets go of its sockets.
    let started = Instant::now();
    let all_closed = tokio::task::spawn_blocking(move || held.iter_mut().all(closed_by_server))
        .await
        .unwrap();
    assert!(all_closed);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server_sockets(pid) > baseline + 2 {
        assert!(
            Instant::now() < deadline,
            "server still holds {} sockets",
            server_sockets(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let slowest_normal = normal.await.unwrap();
    assert!(
        slowest_normal < Duration::from_secs(1),
        "normal client waited {slowest_normal:?}"
    );

    // A refused flood is logged once, not per connection.
    let log =
        std::fs::read_to_string(dir.path().join(format!("server-{}.log", server.port))).unwrap();
    assert_eq!(log.matches("connection limit reached").count(), 1, "{log}");
    eprintln!(
        "flood: 2000 attempted, {handshakes} handshakes completed, peak {peak} server sockets \
         (baseline {baseline}), all closed {:?} after the flood; normal client slowest {slowest_normal:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_a_byte_at_a_time_is_refused_within_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--body-read-timeout-secs", "2"]).await;
    let token = server.admin_token().await;
    let config = tls_config(&server);
    let port = server.port;
    let (elapsed, answer) = tokio::task::spawn_blocking(move || {
        let mut tls = connect(port, &config).expect("connected");
        let body = br#"{"value":"trickled-secret-value-0123456789"}"#;
        let head = format!(
            "PUT /secrets/trickled?api-version=7.6 HTTP/1.1\r\nHost: dev.vault.localhost:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        // One byte every 300 ms: the header timeout never fires, each read makes progress, the
        // whole body would take 13 s. Between bytes, whatever the server answered is read (once
        // it has answered and closed, a further write would reset the connection and lose it).
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(8) {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
                        break;
                    }
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
            if sent < body.len() {
                let _ = tls.write_all(&body[sent..sent + 1]).and_then(|_| tls.flush());
                sent += 1;
            }
        }
        (started.elapsed(), String::from_utf8_lossy(&answer).to_string())
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":\"BadParameter\""), "{answer}");
    assert!(!answer.contains("trickled-secret"), "{answer}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // Nothing was stored.
    let (status, _) = server
        .call(
            &server.admin_token().await,
            reqwest::Method::GET,
            "/secrets/trickled",
            None,
        )
        .await;
    assert_eq!(status, 404);
}
