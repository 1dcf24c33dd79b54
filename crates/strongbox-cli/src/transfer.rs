//! `strongbox secret export | import`: a whole vault to and from one passphrase-encrypted file.
//!
//! File format (v1): `SBXPORT1`, a u32 (big-endian) length and a JSON header (Argon2id cost and
//! salt, export id, source vault, mode, and a sealed key check), then chunks, each a u32 length
//! and an XChaCha20-Poly1305 box whose associated data binds the header and the chunk's index.
//! A chunk holds a batch of secrets with their versions (values, content types, tags,
//! attributes). The last chunk is marked final and carries the totals, so a cut file, a dropped,
//! reordered or edited chunk, and a wrong passphrase are all refused.
//!
//! Both directions work in batches of secrets fetched or written concurrently, and keep a
//! checkpoint file (no secret in it: names, counts, offsets) updated after every batch, so an
//! interrupted run continues where it stopped when started again with the same arguments.
//! Import makes the one batch that may have been half-written when it stopped idempotent by
//! comparing each secret's current value with the versions to write.

use crate::context::{self, Global};
use crate::exit::usage;
use crate::output::{self, Format, col, s};
use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use strongbox_client::{Client, secrets};
use strongbox_crypto::{KdfParams, PassphraseKey};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"SBXPORT1";
const KEY_CHECK: &[u8] = b"strongbox export key check";
/// Largest chunk accepted when reading (a batch of secrets with every version).
const MAX_CHUNK: u32 = 256 * 1024 * 1024;
pub const PASSPHRASE_ENV: &str = "STRONGBOX_EXPORT_PASSPHRASE";

#[derive(Args, Debug)]
pub struct Common {
    /// Vault name (or URL).
    #[arg(long)]
    vault: String,
    /// The export file.
    #[arg(long, short = 'f')]
    file: PathBuf,
    /// File holding the passphrase (default: the STRONGBOX_EXPORT_PASSPHRASE variable).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Checkpoint file (default: the export file's path plus `.export-checkpoint` or
    /// `.import-checkpoint`).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Secrets per batch (one chunk of the file, one checkpoint).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    batch_size: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// Testing: pause after each batch, before its checkpoint.
    #[arg(long, hide = true, default_value_t = 0)]
    batch_delay_ms: u64,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    c: Common,
    /// Every version of every secret (default: the latest version only).
    #[arg(long)]
    all_versions: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kdf {
    alg: String,
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Header {
    format: u32,
    export_id: String,
    vault: String,
    all_versions: bool,
    created: String,
    kdf: Kdf,
    /// The key check, sealed: proves the passphrase before any chunk is read or written.
    check: String,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Version {
    value: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    exp: Option<i64>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    versions: Vec<Version>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Chunk {
    index: u64,
    #[serde(rename = "final")]
    last: bool,
    secrets: Vec<Entry>,
    #[serde(default)]
    total_secrets: u64,
    #[serde(default)]
    total_versions: u64,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Checkpoint {
    export_id: String,
    vault: String,
    /// Export: bytes of the file that hold complete chunks.
    #[serde(default)]
    offset: u64,
    /// Chunks complete (written by export, applied by import).
    chunks: u64,
    /// Export: the last secret name written.
    #[serde(default)]
    last_name: Option<String>,
    secrets: u64,
    versions: u64,
    #[serde(default)]
    skipped: u64,
}

fn aad(header_bytes: &[u8], index: u64) -> Vec<u8> {
    let digest = strongbox_crypto::sha256(header_bytes);
    let mut a = b"strongbox export v1 ".to_vec();
    a.extend_from_slice(&digest);
    a.extend_from_slice(&index.to_be_bytes());
    a
}

fn passphrase(c: &Common) -> anyhow::Result<Zeroizing<String>> {
    let p = match &c.passphrase_file {
        Some(f) => Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        None => Zeroizing::new(std::env::var(PASSPHRASE_ENV).map_err(|_| {
            usage(format!(
                "no passphrase: pass --passphrase-file PATH or set {PASSPHRASE_ENV}"
            ))
        })?),
    };
    if p.chars().count() < 12 {
        return Err(usage("the passphrase must have at least 12 characters"));
    }
    Ok(p)
}

fn checkpoint_path(c: &Common, suffix: &str) -> PathBuf {
    c.checkpoint.clone().unwrap_or_else(|| {
        let mut p = c.file.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    })
}

fn read_checkpoint(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("{} is not a checkpoint file", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the checkpoint atomically (temporary file, fsync, rename).
fn write_checkpoint(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let mut tmp = path.to_path_buf().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    context::write_private(&tmp, serde_json::to_string_pretty(cp)?.as_bytes(), true)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// A progress bar on a terminal; hidden when stderr is not one.
pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub(crate) fn write_frame(f: &mut File, bytes: &[u8]) -> anyhow::Result<()> {
    let len = u32::try_from(bytes.len()).context("chunk too large")?;
    f.write_all(&len.to_be_bytes())?;
    f.write_all(bytes)?;
    Ok(())
}

/// Reads one length-prefixed frame; None at a clean end of file.
pub(crate) fn read_frame(f: &mut File) -> anyhow::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = f.read(&mut len[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            bail!("the file is cut short");
        }
        got += n;
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_CHUNK {
        bail!("the file is damaged (a chunk claims {len} bytes)");
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)
        .map_err(|_| anyhow::anyhow!("the file is cut short"))?;
    Ok(Some(buf))
}

/// Reads the header and derives the key (checking the passphrase against the key check).
fn open_header(f: &mut File, pass: &str) -> anyhow::Result<(Header, Vec<u8>, PassphraseKey)> {
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)
        .map_err(|_| anyhow::anyhow!("not a Strongbox export file"))?;
    if &magic != MAGIC {
        bail!("not a Strongbox export file");
    }
    let header_bytes = read_frame(f)?.context("the export file has no header")?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|_| anyhow::anyhow!("the export file's header is damaged"))?;
    if header.format != 1 || header.kdf.alg != "argon2id" {
        bail!("unsupported export format");
    }
    let salt = hex_decode(&header.kdf.salt).context("the export file's header is damaged")?;
    let params = KdfParams {
        memory_kib: header.kdf.memory_kib,
        passes: header.kdf.passes,
        lanes: header.kdf.lanes,
    };
    let key = PassphraseKey::derive(pass.as_bytes(), &salt, params)
        .map_err(|_| anyhow::anyhow!("the export file's key parameters are not acceptable"))?;
    let check = hex_decode(&header.check).context("the export file's header is damaged")?;
    let mut check_aad = KEY_CHECK.to_vec();
    check_aad.extend_from_slice(header.export_id.as_bytes());
    match key.open(&check_aad, &check) {
        Ok(p) if &**p == KEY_CHECK => {}
        _ => bail!("wrong passphrase (or a damaged export file)"),
    }
    Ok((header, header_bytes, key))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

fn hex_encode(b: &[u8]) -> String {
    hex::encode(b)
}

fn version_of(v: &Value) -> Option<Version> {
    Some(Version {
        value: v["value"].as_str()?.to_string(),
        content_type: v["contentType"].as_str().map(String::from),
        tags: serde_json::from_value(v["tags"].clone()).ok().flatten(),
        enabled: v["attributes"]["enabled"].as_bool(),
        nbf: v["attributes"]["nbf"].as_i64(),
        exp: v["attributes"]["exp"].as_i64(),
    })
}

/// A disabled version cannot be read (403), and a secret may vanish while we work (404):
/// both are skipped and counted.
fn skippable(e: &strongbox_client::Error) -> bool {
    matches!(e.status(), Some(403) | Some(404))
}

/// Fetches one secret for the export: its latest version, or all of them in creation order.
async fn fetch(
    c: Arc<Client>,
    vault: String,
    name: String,
    all: bool,
) -> anyhow::Result<(Entry, u64)> {
    let mut skipped = 0;
    let mut versions = Vec::new();
    if all {
        let mut items = match c
            .list_all(&secrets::list_versions(&vault, &name), None)
            .await
        {
            Ok(i) => i,
            Err(e) if skippable(&e) => return Ok((Entry { name, versions }, 1)),
            Err(e) => return Err(e.into()),
        };
        items.sort_by_key(|i| i["attributes"]["created"].as_i64().unwrap_or(0));
        for item in items {
            let id = s(&item, "/id");
            let version = id.rsplit('/').next().unwrap_or_default().to_string();
            match c.json(&secrets::get(&vault, &name, Some(&version))).await {
                Ok(v) => versions.extend(version_of(&v)),
                Err(e) if skippable(&e) => skipped += 1,
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        match c.json(&secrets::get(&vault, &name, None)).await {
            Ok(v) => versions.extend(version_of(&v)),
            Err(e) if skippable(&e) => skipped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((Entry { name, versions }, skipped))
}

pub async fn export(g: &Global, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let c = &a.c;
    let pass = passphrase(c)?;
    let client = Arc::new(context::client(g)?);
    let vault_url = client.credentials().vault_url(&c.vault)?;
    let cp_path = checkpoint_path(c, ".export-checkpoint");
    let resume = read_checkpoint(&cp_path)?;

    let (mut file, header_bytes, key, mut cp) = match resume {
        Some(cp) => {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&c.file)
                .with_context(|| format!("opening {} to resume", c.file.display()))?;
            let (header, header_bytes, key) = open_header(&mut f, &pass)?;
            if header.export_id != cp.export_id || header.all_versions != a.all_versions {
                bail!(
                    "the checkpoint {} belongs to another export",
                    cp_path.display()
                );
            }
            // Whatever follows the last complete chunk was written by the interrupted run.
            f.set_len(cp.offset)?;
            f.seek(SeekFrom::Start(cp.offset))?;
            (f, header_bytes, key, cp)
        }
        None => {
            let mut f = OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&c.file)
                .with_context(|| {
                    format!(
                        "creating {} (it must not exist; an interrupted export resumes from its checkpoint)",
                        c.file.display()
                    )
                })?;
            let export_id = hex_encode(&strongbox_crypto::random_bytes::<16>());
            let salt = strongbox_crypto::random_bytes::<16>();
            let p = KdfParams::DEFAULT;
            let key = PassphraseKey::derive(pass.as_bytes(), &salt, p)?;
            let mut check_aad = KEY_CHECK.to_vec();
            check_aad.extend_from_slice(export_id.as_bytes());
            let header = Header {
                format: 1,
                export_id: export_id.clone(),
                vault: vault_url.clone(),
                all_versions: a.all_versions,
                created: context::rfc3339_ms(context::now_ms()),
                kdf: Kdf {
                    alg: "argon2id".into(),
                    memory_kib: p.memory_kib,
                    passes: p.passes,
                    lanes: p.lanes,
                    salt: hex_encode(&salt),
                },
                check: hex_encode(&key.seal(&check_aad, KEY_CHECK)),
            };
            let header_bytes = serde_json::to_vec(&header)?;
            f.write_all(MAGIC)?;
            write_frame(&mut f, &header_bytes)?;
            f.sync_all()?;
            let cp = Checkpoint {
                export_id,
                vault: vault_url.clone(),
                offset: f.stream_position()?,
                ..Default::default()
            };
            write_checkpoint(&cp_path, &cp)?;
            (f, header_bytes, key, cp)
        }
    };

    // Names in order; a resumed run continues after the last name written.
    let mut names: Vec<String> = client
        .list_all(&secrets::list(&vault_url), None)
        .await?
        .iter()
        .map(|i| {
            s(i, "/id")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    if let Some(last) = &cp.last_name {
        names.retain(|n| n > last);
    }
    let bar = progress(names.len() as u64, "export");
    let sem = Arc::new(tokio::sync::Semaphore::new(c.concurrency as usize));
    for batch in names.chunks(c.batch_size as usize) {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, name) in batch.iter().enumerate() {
            let (client, vault, name, sem) =
                (client.clone(), vault_url.clone(), name.clone(), sem.clone());
            let all = a.all_versions;
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, fetch(client, vault, name, all).await)
            });
        }
        let mut results: Vec<Option<(Entry, u64)>> = vec![None; batch.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, r) = joined.context("an export task failed")?;
            results[i] = Some(r?);
        }
        let mut entries = Vec::new();
        for (entry, skipped) in results.into_iter().flatten() {
            cp.skipped += skipped;
            if !entry.versions.is_empty() {
                cp.secrets += 1;
                cp.versions += entry.versions.len() as u64;
                entries.push(entry);
            }
        }
        let chunk = Chunk {
            index: cp.chunks,
            last: false,
            secrets: entries,
            total_secrets: 0,
            total_versions: 0,
        };
        let plain = Zeroizing::new(serde_json::to_vec(&chunk)?);
        drop(chunk);
        write_frame(&mut file, &key.seal(&aad(&header_bytes, cp.chunks), &plain))?;
        file.sync_data()?;
        pause(c).await;
        cp.chunks += 1;
        cp.offset = file.stream_position()?;
        cp.last_name = batch.last().cloned();
        write_checkpoint(&cp_path, &cp)?;
        bar.inc(batch.len() as u64);
    }
    let last = Chunk {
        index: cp.chunks,
        last: true,
        secrets: vec![],
        total_secrets: cp.secrets,
        total_versions: cp.versions,
    };
    write_frame(
        &mut file,
        &key.seal(&aad(&header_bytes, cp.chunks), &serde_json::to_vec(&last)?),
    )?;
    file.sync_all()?;
    std::fs::remove_file(&cp_path).ok();
    bar.finish_and_clear();
    summary(g.output, &cp, "exported");
    Ok(ExitCode::SUCCESS)
}

/// Testing: a batch is done but not yet checkpointed, the worst moment to be killed.
async fn pause(c: &Common) {
    if c.batch_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(c.batch_delay_ms)).await;
    }
}

fn summary(format: Format, cp: &Checkpoint, what: &str) {
    let v = json!({"vault": cp.vault, what: {"secrets": cp.secrets, "versions": cp.versions},
        "skipped": cp.skipped, "chunks": cp.chunks});
    let secrets_ptr = format!("/{what}/secrets");
    let versions_ptr = format!("/{what}/versions");
    output::one(
        format,
        &[
            col("Vault", &|v| s(v, "/vault")),
            col("Secrets", &|v| s(v, &secrets_ptr)),
            col("Versions", &|v| s(v, &versions_ptr)),
            col("Skipped", &|v| s(v, "/skipped")),
        ],
        &v,
    );
}

fn same(current: &Value, v: &Version) -> bool {
    version_of(current).is_some_and(|c| {
        c.value == v.value
            && c.content_type == v.content_type
            && c.tags == v.tags
            && c.nbf == v.nbf
            && c.exp == v.exp
    })
}

/// Writes one secret's versions in order. In `redo` mode (the batch an interrupted run may have
/// half-written) it first finds how far the secret already got.
async fn put_secret(c: Arc<Client>, vault: String, e: Entry, redo: bool) -> anyhow::Result<u64> {
    let mut start = 0;
    if redo {
        match c.json(&secrets::get(&vault, &e.name, None)).await {
            Ok(current) => {
                if let Some(i) = e.versions.iter().rposition(|v| same(&current, v)) {
                    start = i + 1;
                }
            }
            Err(err) if skippable(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let mut written = 0;
    for v in &e.versions[start..] {
        let o = secrets::SetOptions {
            content_type: v.content_type.clone(),
            tags: v.tags.clone(),
            enabled: v.enabled,
            nbf: v.nbf,
            exp: v.exp,
        };
        c.send(&secrets::set(&vault, &e.name, &v.value, &o)).await?;
        written += 1;
    }
    Ok(written)
}

pub async fn import(g: &Global, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let c = &a.c;
    let pass = passphrase(c)?;
    let client = Arc::new(context::client(g)?);
    let vault_url = client.credentials().vault_url(&c.vault)?;
    let mut file = File::open(&c.file).with_context(|| format!("opening {}", c.file.display()))?;
    let (header, header_bytes, key) = open_header(&mut file, &pass)?;
    let cp_path = checkpoint_path(c, ".import-checkpoint");
    let mut cp = match read_checkpoint(&cp_path)? {
        Some(cp) if cp.export_id == header.export_id && cp.vault == vault_url => cp,
        Some(_) => bail!(
            "the checkpoint {} belongs to another import",
            cp_path.display()
        ),
        None => {
            let cp = Checkpoint {
                export_id: header.export_id.clone(),
                vault: vault_url.clone(),
                ..Default::default()
            };
            write_checkpoint(&cp_path, &cp)?;
            cp
        }
    };
    let resumed_at = cp.chunks;
    let bar = progress(0, "import");
    let sem = Arc::new(tokio::sync::Semaphore::new(c.concurrency as usize));
    let mut index = 0u64;
    let done = loop {
        let Some(frame) = read_frame(&mut file)? else {
            bail!("the export file is incomplete (it has no final chunk)");
        };
        if index < cp.chunks {
            index += 1;
            continue;
        }
        let plain = key.open(&aad(&header_bytes, index), &frame).map_err(|_| {
            anyhow::anyhow!("chunk {index} of the export file is damaged or out of place")
        })?;
        let chunk: Chunk = serde_json::from_slice(&plain)
            .map_err(|_| anyhow::anyhow!("chunk {index} of the export file is damaged"))?;
        if chunk.index != index {
            bail!("chunk {index} of the export file is out of place");
        }
        if chunk.last {
            break chunk;
        }
        let redo = index == resumed_at && resumed_at > 0;
        bar.inc_length(chunk.secrets.len() as u64);
        let mut tasks = tokio::task::JoinSet::new();
        let versions: u64 = chunk.secrets.iter().map(|e| e.versions.len() as u64).sum();
        let count = chunk.secrets.len() as u64;
        for e in chunk.secrets {
            let (client, vault, sem) = (client.clone(), vault_url.clone(), sem.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                put_secret(client, vault, e, redo).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.context("an import task failed")??;
            bar.inc(1);
        }
        pause(c).await;
        cp.chunks = index + 1;
        cp.secrets += count;
        cp.versions += versions;
        write_checkpoint(&cp_path, &cp)?;
        index += 1;
    };
    if done.total_secrets != cp.secrets || done.total_versions != cp.versions {
        bail!(
            "the export file's totals ({} secrets, {} versions) do not match what it held ({}, {})",
            done.total_secrets,
            done.total_versions,
            cp.secrets,
            cp.versions
        );
    }
    std::fs::remove_file(&cp_path).ok();
    bar.finish_and_clear();
    summary(g.output, &cp, "imported");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_aad_binds_header_and_index() {
        assert_eq!(
            hex_decode(&hex_encode(&[0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert!(hex_decode("abc").is_none() && hex_decode("zz").is_none());
        assert_ne!(aad(b"h", 1), aad(b"h", 2));
        assert_ne!(aad(b"h", 1), aad(b"g", 1));
    }

    #[test]
    fn frames_read_back_and_cut_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = File::create(&p).unwrap();
        write_frame(&mut f, b"hello").unwrap();
        write_frame(&mut f, b"").unwrap();
        drop(f);
        let mut f = File::open(&p).unwrap();
        assert_eq!(read_frame(&mut f).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut f).unwrap().unwrap(), b"");
        assert!(read_frame(&mut f).unwrap().is_none());
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..6]).unwrap();
        assert!(read_frame(&mut File::open(&p).unwrap()).is_err());
    }
}
