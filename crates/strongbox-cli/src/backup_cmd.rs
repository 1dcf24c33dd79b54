//! `strongbox admin backup | backup verify | restore`: the whole store in one sealed file.
//!
//! The command opens the store itself rather than asking the server: SQLite in WAL mode lets a
//! reader run beside the server's writer, and `VACUUM INTO` copies the database inside one read
//! transaction, so the copy is the store exactly as of one commit: every write the server
//! acknowledged before the backup began (acknowledged means committed with a full fsync) is in
//! it, and no half of a later transaction is. On PostgreSQL every table is copied inside one
//! `REPEATABLE READ` transaction, which gives the same guarantee (as pg_dump does). It needs what the other admin commands need
//! (the data dir and the root key), no credentials of a running server.
//!
//! File format (v1): `SBBACKP1`, a u32 (big-endian) length and a JSON header, then frames (u32
//! length, XChaCha20-Poly1305 box) of the database file in 1 MiB chunks. Each chunk's
//! associated data binds the header's digest and the chunk's index; a final frame carries the
//! size and SHA-256 of the whole database, so a cut, reordered, edited or foreign file is
//! refused. Sealed under a key derived from the root key (the default), or under a passphrase
//! (Argon2id), in which case the header also carries the keyring's master keys sealed under
//! it, so the backup restores with the passphrase alone under any new root.

use crate::admin_cmd::{StoreArgs, read_passphrase_file};
use crate::transfer::{progress, read_frame, write_frame};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use strongbox_crypto::{KdfParams, MasterKeys, PassphraseKey, RootKey};
use strongbox_domain::{Clock, SystemClock};
use strongbox_server::keys;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"SBBACKP1";
const CHUNK: usize = 1024 * 1024;
const FINAL: u64 = u64::MAX;
const ROOT_LABEL: &str = "strongbox backup file v1";
const CHECK: &[u8] = b"strongbox backup key check";
const MASTER_AAD: &[u8] = b"strongbox backup keyring master";

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The backup file to write (must not exist).
    #[arg(long)]
    to: Option<PathBuf>,
    #[command(flatten)]
    sealing: Sealing,
}

#[derive(Args, Debug, Clone)]
pub struct Sealing {
    /// Seal the backup under the passphrase in this file (Argon2id) instead of the root key.
    #[arg(long, env = "STRONGBOX_BACKUP_PASSPHRASE_FILE")]
    backup_passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Check that a backup file opens (with the root key or --backup-passphrase-file), is whole
    /// and holds a sound database.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        sealing: Sealing,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    from: PathBuf,
    /// The new store: --data-dir NEW (and --store sqlite:PATH); its root: --key-file (default
    /// root.key in NEW, created for a passphrase-sealed backup) or --passphrase-file.
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    sealing: Sealing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Header {
    format: u32,
    backup_id: String,
    created_ms: i64,
    backend: String,
    /// "root" or "passphrase".
    sealing: String,
    /// The Argon2id salt of a passphrase root (root sealing only): the store holds it, and the
    /// store is inside the file.
    #[serde(default)]
    root_salt: Option<String>,
    #[serde(default)]
    kdf: Option<Kdf>,
    /// CHECK sealed: proves the key before any chunk is read.
    check: String,
    /// Passphrase sealing: the keyring's master keys sealed under the passphrase.
    #[serde(default)]
    master: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kdf {
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Trailer {
    chunks: u64,
    bytes: u64,
    sha256: String,
}

fn chunk_aad(header: &[u8], index: u64) -> Vec<u8> {
    let mut a = b"strongbox backup v1 ".to_vec();
    a.extend_from_slice(&strongbox_crypto::sha256(header));
    a.extend_from_slice(&index.to_be_bytes());
    a
}

fn hex_field(s: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(s).map_err(|_| anyhow::anyhow!("the backup header is damaged"))
}

fn passphrase_key(pass: &SecretString, salt: &[u8], p: KdfParams) -> anyhow::Result<PassphraseKey> {
    Ok(PassphraseKey::derive(
        pass.expose_secret().as_bytes(),
        salt,
        p,
    )?)
}

/// A private directory beside `near` for the plaintext database while it is copied.
struct Scratch(PathBuf);

impl Scratch {
    fn beside(near: &Path) -> anyhow::Result<Scratch> {
        let parent = near
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = parent.join(format!(
            ".strongbox-backup-{}",
            strongbox_crypto::random_hex_id()
        ));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
    fn file(&self) -> PathBuf {
        self.0.join("store.db")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_path(config: &strongbox_server::Config) -> anyhow::Result<PathBuf> {
    let url = config.store_url();
    match url.strip_prefix("sqlite:") {
        Some(p) => Ok(PathBuf::from(
            p.trim_start_matches("//").split('?').next().unwrap_or(p),
        )),
        None => {
            bail!("this backup is of a SQLite store: restore it with --data-dir (and no --store)")
        }
    }
}

pub async fn run(a: BackupArgs, command: Option<BackupCommand>) -> anyhow::Result<ExitCode> {
    match command {
        Some(BackupCommand::Verify {
            file,
            store,
            sealing,
        }) => verify(&file, &store, &sealing).await,
        None => {
            let to =
                a.to.ok_or_else(|| crate::exit::usage("give --to FILE (or `backup verify FILE`)"))?;
            backup(&a.store, &a.sealing, &to).await
        }
    }
}

async fn backup(args: &StoreArgs, sealing: &Sealing, to: &Path) -> anyhow::Result<ExitCode> {
    if to.exists() {
        bail!("{} exists; a backup never overwrites a file", to.display());
    }
    let config = args.config()?;
    let (store, keyring) = strongbox_server::open_context(&config).await?;
    let clock = SystemClock;
    let backend = store.backend();
    let (key, mut header) = match &sealing.backup_passphrase_file {
        Some(p) => {
            let pass = read_passphrase_file(p)?;
            let salt = strongbox_crypto::random_bytes::<16>();
            let params = KdfParams::DEFAULT;
            let key =
                tokio::task::spawn_blocking(move || passphrase_key(&pass, &salt, params)).await??;
            let master = key.seal(MASTER_AAD, &keyring.master().to_bytes());
            let kdf = Kdf {
                memory_kib: params.memory_kib,
                passes: params.passes,
                lanes: params.lanes,
                salt: hex::encode(salt),
            };
            (
                key,
                header_base("passphrase", Some(kdf), None, Some(hex::encode(master))),
            )
        }
        None => {
            let root = strongbox_server::root_key(&config, &*store).await?;
            let salt = match config.passphrase {
                Some(_) => store.get_meta(keys::SALT_META).await?.map(hex::encode),
                None => None,
            };
            let key = PassphraseKey::from_root(&root, ROOT_LABEL);
            (key, header_base("root", None, salt, None))
        }
    };
    header.created_ms = clock.now_ms();
    header.backend = backend.into();
    header.check = hex::encode(key.seal(CHECK, CHECK));
    let header_bytes = serde_json::to_vec(&header)?;

    let scratch = Scratch::beside(to)?;
    let spinner = progress(0, "snapshot");
    store
        .snapshot_into(&scratch.file())
        .await
        .context("taking the snapshot")?;
    spinner.finish_and_clear();

    // A crashed earlier run may have left its partial file: never a backup, safe to replace.
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    let _ = std::fs::remove_file(&partial);
    let mut out = crate::context::create_private(&partial)?;
    out.write_all(MAGIC)?;
    write_frame(&mut out, &header_bytes)?;
    let mut db = File::open(scratch.file())?;
    let size = db.metadata()?.len();
    let bar = progress(size, "sealing");
    let (mut hash, mut chunks, mut bytes) = (sha2::Sha256::new(), 0u64, 0u64);
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    loop {
        let n = read_full(&mut db, &mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        write_frame(
            &mut out,
            &key.seal(&chunk_aad(&header_bytes, chunks), &buf[..n]),
        )?;
        chunks += 1;
        bytes += n as u64;
        bar.set_position(bytes);
    }
    let trailer = Trailer {
        chunks,
        bytes,
        sha256: hex::encode(hash.finalize()),
    };
    write_frame(
        &mut out,
        &key.seal(
            &chunk_aad(&header_bytes, FINAL),
            &serde_json::to_vec(&trailer)?,
        ),
    )?;
    out.sync_all()?;
    // Linked, not renamed: a file that appeared at `to` meanwhile is never replaced.
    std::fs::hard_link(&partial, to).with_context(|| format!("creating {}", to.display()))?;
    std::fs::remove_file(&partial)?;
    bar.finish_and_clear();
    keys::audit(
        &*store,
        &clock,
        "StoreBackup",
        serde_json::json!({"backupId": header.backup_id, "sealing": header.sealing, "bytes": bytes}),
    )
    .await?;
    println!(
        "{}",
        serde_json::json!({"file": to.display().to_string(), "backupId": header.backup_id,
            "sealing": header.sealing, "bytes": bytes, "sha256": trailer.sha256})
    );
    Ok(ExitCode::SUCCESS)
}

fn header_base(
    sealing: &str,
    kdf: Option<Kdf>,
    root_salt: Option<String>,
    master: Option<String>,
) -> Header {
    Header {
        format: 1,
        backup_id: uuid::Uuid::new_v4().to_string(),
        created_ms: 0,
        backend: "sqlite".into(),
        sealing: sealing.into(),
        root_salt,
        kdf,
        check: String::new(),
        master,
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = f.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// An opened backup: its header, the key that opens it, and the master keys (passphrase only).
struct Opened {
    file: File,
    header: Header,
    header_bytes: Vec<u8>,
    key: PassphraseKey,
    master: Option<MasterKeys>,
}

async fn open_backup(path: &Path, args: &StoreArgs, sealing: &Sealing) -> anyhow::Result<Opened> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 8];
    if file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        bail!("{} is not a Strongbox backup", path.display());
    }
    let header_bytes = read_frame(&mut file)?.context("the backup has no header")?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|_| anyhow::anyhow!("the backup header is damaged"))?;
    anyhow::ensure!(
        header.format == 1,
        "backup format {} is not supported",
        header.format
    );
    let key = match header.sealing.as_str() {
        "passphrase" => {
            let p = sealing.backup_passphrase_file.as_ref().ok_or_else(|| {
                crate::exit::usage(
                    "this backup is sealed under a passphrase: give --backup-passphrase-file",
                )
            })?;
            let pass = read_passphrase_file(p)?;
            let kdf = header.kdf.clone().context("the backup header is damaged")?;
            let salt = hex_field(&kdf.salt)?;
            let params = KdfParams {
                memory_kib: kdf.memory_kib,
                passes: kdf.passes,
                lanes: kdf.lanes,
            };
            tokio::task::spawn_blocking(move || passphrase_key(&pass, &salt, params)).await??
        }
        "root" => PassphraseKey::from_root(&backup_root(args, &header).await?, ROOT_LABEL),
        other => bail!("unknown backup sealing {other:?}"),
    };
    key.open(CHECK, &hex_field(&header.check)?).map_err(|_| {
        anyhow::anyhow!(
            "this backup does not open with the given key (another store's backup, or the wrong key or passphrase)"
        )
    })?;
    let master = match &header.master {
        Some(m) => Some(MasterKeys::from_bytes(
            &key.open(MASTER_AAD, &hex_field(m)?)
                .map_err(|_| anyhow::anyhow!("the backup header is damaged"))?,
        )?),
        None => None,
    };
    Ok(Opened {
        file,
        header,
        header_bytes,
        key,
        master,
    })
}

/// The root a root-sealed backup was made with: the key file named (never created), or the
/// passphrase with the salt the backup records.
async fn backup_root(args: &StoreArgs, header: &Header) -> anyhow::Result<RootKey> {
    let config = args.config()?;
    match (&config.passphrase, &header.root_salt) {
        (Some(p), Some(salt)) => {
            let salt = hex_field(salt)?;
            let p = p.clone();
            Ok(tokio::task::spawn_blocking(move || {
                RootKey::from_passphrase(p.expose_secret().as_bytes(), &salt)
            })
            .await??)
        }
        (Some(_), None) => bail!(
            "this backup is sealed under a key file root: give --key-file, not --passphrase-file"
        ),
        (None, _) => {
            let path = config
                .key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("root.key"));
            RootKey::load_file(&path).with_context(|| {
                "this backup is sealed under the root key it was made with: give --key-file (or --passphrase-file)"
            })
        }
    }
}

/// Decrypts every chunk into `out` (when given), checking order, completeness and the digest.
fn unseal_into(o: &mut Opened, mut out: Option<&mut File>) -> anyhow::Result<Trailer> {
    let damaged = |i: u64| anyhow::anyhow!("chunk {i} of the backup is damaged or out of place");
    let (mut hash, mut index, mut bytes) = (sha2::Sha256::new(), 0u64, 0u64);
    let bar = progress(o.file.metadata()?.len(), "reading");
    loop {
        let frame =
            read_frame(&mut o.file)?.context("the backup is incomplete (no final chunk)")?;
        if let Ok(plain) = o.key.open(&chunk_aad(&o.header_bytes, FINAL), &frame) {
            let t: Trailer = serde_json::from_slice(&plain)?;
            anyhow::ensure!(
                t.chunks == index && t.bytes == bytes && t.sha256 == hex::encode(hash.finalize()),
                "the backup is damaged (its contents do not match its digest)"
            );
            anyhow::ensure!(
                read_frame(&mut o.file)?.is_none(),
                "the backup has data after its final chunk"
            );
            bar.finish_and_clear();
            return Ok(t);
        }
        let plain = o
            .key
            .open(&chunk_aad(&o.header_bytes, index), &frame)
            .map_err(|_| damaged(index))?;
        hash.update(&plain[..]);
        if let Some(f) = out.as_deref_mut() {
            f.write_all(&plain)?;
        }
        index += 1;
        bytes += plain.len() as u64;
        bar.inc(frame.len() as u64 + 4);
    }
}

/// Opens a restored or verified database file and checks it (SQLite's integrity check), and
/// counts what it holds.
async fn inspect(db: &Path) -> anyhow::Result<serde_json::Value> {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .context("opening the database in the backup")?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    anyhow::ensure!(
        check == "ok",
        "the database in the backup is damaged: {check}"
    );
    let mut counts = serde_json::Map::new();
    for (name, sql) in [
        ("vaults", "SELECT count(*) FROM vaults"),
        ("secrets", "SELECT count(*) FROM secrets"),
        ("secretVersions", "SELECT count(*) FROM secret_versions"),
        ("auditRecords", "SELECT count(*) FROM audit_records"),
        ("principals", "SELECT count(*) FROM principals"),
    ] {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
        counts.insert(name.into(), n.into());
    }
    Ok(counts.into())
}

async fn verify(path: &Path, args: &StoreArgs, sealing: &Sealing) -> anyhow::Result<ExitCode> {
    let mut o = open_backup(path, args, sealing).await?;
    let scratch = Scratch::beside(path)?;
    let mut out = crate::context::create_private(&scratch.file())?;
    let t = unseal_into(&mut o, Some(&mut out))?;
    drop(out);
    // A SQLite database gets SQLite's own integrity check; a PostgreSQL snapshot is checked
    // when it is loaded (in one transaction).
    let counts = match o.header.backend.as_str() {
        "sqlite" => inspect(&scratch.file()).await?,
        _ => serde_json::Value::Null,
    };
    println!(
        "{}",
        serde_json::json!({"file": path.display().to_string(), "backupId": o.header.backup_id,
            "sealing": o.header.sealing, "createdMs": o.header.created_ms, "bytes": t.bytes,
            "sha256": t.sha256, "counts": counts, "ok": true})
    );
    Ok(ExitCode::SUCCESS)
}

fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a SQLite backup as the new store's database file, which must not exist yet.
async fn restore_sqlite(
    config: &strongbox_server::Config,
    o: &mut Opened,
) -> anyhow::Result<(Trailer, serde_json::Value)> {
    let db = sqlite_path(config)?;
    let occupied = |p: &Path| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false);
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    if occupied(&db) || occupied(&wal) {
        bail!(
            "{} already holds a store; restore only into a new, empty one",
            db.display()
        );
    }
    create_data_dir(&config.data_dir)?;
    let partial = PathBuf::from(format!("{}.restoring", db.display()));
    let _ = std::fs::remove_file(&partial);
    let mut out = crate::context::create_private(&partial)?;
    let t = unseal_into(o, Some(&mut out))?;
    out.sync_all()?;
    drop(out);
    let counts = inspect(&partial).await?;
    // The target could have appeared meanwhile: link, never rename over it.
    std::fs::hard_link(&partial, &db)
        .with_context(|| format!("{} appeared meanwhile; nothing restored", db.display()))?;
    std::fs::remove_file(&partial)?;
    if let Some(dir) = db.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok((t, counts))
}

/// Loads a PostgreSQL backup into the (new, empty) database `--store` names, in one transaction.
async fn restore_postgres(
    config: &strongbox_server::Config,
    o: &mut Opened,
) -> anyhow::Result<(Trailer, serde_json::Value)> {
    let url = config.store_url();
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "this backup is of a PostgreSQL store: give --store postgres://… (a new, empty database)"
    );
    create_data_dir(&config.data_dir)?;
    let store = strongbox_store_postgres::PostgresStore::open(&url)
        .await
        .context("opening the PostgreSQL store")?;
    let scratch = Scratch::beside(&config.data_dir.join("restore"))?;
    let mut out = crate::context::create_private(&scratch.file())?;
    let t = unseal_into(o, Some(&mut out))?;
    drop(out);
    store
        .restore_snapshot(&scratch.file())
        .await
        .map_err(|e| match e {
            strongbox_store::StoreError::Conflict => anyhow::anyhow!(
                "the database already holds a store; restore only into a new, empty one"
            ),
            e => e.into(),
        })?;
    Ok((t, serde_json::Value::Null))
}

pub async fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let config = a.store.config()?;
    let mut o = open_backup(&a.from, &a.store, &a.sealing).await?;
    let (t, counts) = match o.header.backend.as_str() {
        "sqlite" => restore_sqlite(&config, &mut o).await?,
        "postgres" => restore_postgres(&config, &mut o).await?,
        other => bail!("a backup of a {other:?} store cannot be restored by this binary"),
    };

    let store = strongbox_server::open_store(&config.store_url()).await?;
    if let Some(master) = o.master.take() {
        // A passphrase backup: seal its keyring under the root the new store is given.
        let (root, salt) = match &config.passphrase {
            Some(p) => {
                let salt = strongbox_crypto::random_bytes::<16>().to_vec();
                let (p, s) = (p.clone(), salt.clone());
                let root = tokio::task::spawn_blocking(move || {
                    RootKey::from_passphrase(p.expose_secret().as_bytes(), &s)
                })
                .await??;
                (root, Some(salt))
            }
            None => {
                let path = config
                    .key_file
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("root.key"));
                (RootKey::load_or_create_file(&path)?, None)
            }
        };
        keys::seal_master(&*store, &master, &root, salt.as_deref()).await?;
    }
    drop(store);
    // The restored store must open with the root it was given, or nothing was restored.
    let (store, _) = strongbox_server::open_context(&config)
        .await
        .context("the restored store does not open with the given root key")?;
    keys::audit(
        &*store,
        &SystemClock,
        "StoreRestore",
        serde_json::json!({"backupId": o.header.backup_id, "bytes": t.bytes}),
    )
    .await?;
    println!(
        "{}",
        serde_json::json!({"store": o.header.backend, "backupId": o.header.backup_id,
            "counts": counts})
    );
    Ok(ExitCode::SUCCESS)
}
