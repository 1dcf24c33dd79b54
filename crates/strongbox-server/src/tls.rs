//! First-run TLS: a small CA (so clients can be pointed at one CA file) and a server certificate
//! for localhost, 127.0.0.1, ::1 and `*.{dns suffix}`. Keys are written 0600.

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct TlsFiles {
    /// What clients (and activated devices) are told to trust.
    pub ca_cert: PathBuf,
    pub server_chain: PathBuf,
    pub server_key: PathBuf,
}

/// The operator's certificate files (`--tls-cert`, `--tls-key`, `--tls-ca`), or the generated
/// ones in the data dir when none are given.
pub fn resolve(
    data_dir: &Path,
    dns_suffix: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
) -> anyhow::Result<TlsFiles> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(TlsFiles {
            // Without --tls-ca the chain itself is what clients are pointed at.
            ca_cert: std::path::absolute(ca.unwrap_or(cert))?,
            server_chain: cert.to_path_buf(),
            server_key: key.to_path_buf(),
        }),
        (None, None) => ensure(data_dir, dns_suffix),
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
}

/// How often the certificate files are compared with what is served (besides SIGHUP).
const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

fn fingerprint(files: &TlsFiles) -> Option<[u8; 32]> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(&files.server_chain).ok()?);
    h.update(std::fs::read(&files.server_key).ok()?);
    Some(h.finalize().into())
}

/// Serves renewed certificates without a restart: on SIGHUP and whenever the files' content
/// changes (checked every few seconds, which also catches a Kubernetes Secret volume's symlink
/// swap), the new pair is loaded for new handshakes; connections already open keep theirs. A pair
/// that does not load is logged and the old one kept.
pub fn spawn_reloader(
    config: axum_server::tls_rustls::RustlsConfig,
    files: TlsFiles,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut served = fingerprint(&files);
        let mut failed = None;
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let forced = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = h.recv() => true,
                    _ = tokio::time::sleep(RELOAD_CHECK) => false,
                },
                None => {
                    tokio::time::sleep(RELOAD_CHECK).await;
                    false
                }
            };
            #[cfg(not(unix))]
            let forced = {
                tokio::time::sleep(RELOAD_CHECK).await;
                false
            };
            let now = fingerprint(&files);
            if now.is_none() || (now == served && !forced) || (now == failed && !forced) {
                continue;
            }
            match config
                .reload_from_pem_file(&files.server_chain, &files.server_key)
                .await
            {
                Ok(()) => {
                    tracing::info!(cert = %files.server_chain.display(), "TLS certificate reloaded");
                    served = now;
                    failed = None;
                }
                Err(e) => {
                    tracing::error!(cert = %files.server_chain.display(), error = %e, "the new TLS certificate does not load; still serving the previous one");
                    failed = now;
                }
            }
        }
    })
}

pub fn ensure(data_dir: &Path, dns_suffix: &str) -> anyhow::Result<TlsFiles> {
    let dir = data_dir.join("tls");
    let files = TlsFiles {
        ca_cert: std::path::absolute(dir.join("ca.pem"))?,
        server_chain: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    if files.ca_cert.exists() && files.server_chain.exists() && files.server_key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir)?;
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Strongbox local CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "Strongbox");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate().context("generating the server key")?;
    let mut server = CertificateParams::new(vec![
        "localhost".to_string(),
        dns_suffix.to_string(),
        format!("*.{dns_suffix}"),
    ])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    server
        .distinguished_name
        .push(DnType::CommonName, "strongbox");
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Python 3.13's strict verification wants the authority key identifier.
    server.use_authority_key_identifier_extension = true;
    let issuer = Issuer::new(ca, &ca_key);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    write_private(&files.server_key, server_key.serialize_pem().as_bytes())?;
    std::fs::write(
        &files.server_chain,
        format!("{}{}", server_cert.pem(), ca_cert.pem()),
    )?;
    std::fs::write(&files.ca_cert, ca_cert.pem())?;
    Ok(files)
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
