//! Audit records in files: the "storage account" destination of diagnostic settings.
//!
//! One directory per chain (vault), under the account's directory:
//! `insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/…/VAULTS/{NAME}/chain={vault id}/`
//! (Azure's container and blob prefix, plus the chain so a re-created vault of the same name gets
//! a directory of its own). In it, JSON-lines files `00000001.jsonl`, `00000002.jsonl`, … and
//! `manifest.json`. Each line is one AuditEvent record with its place in the hash chain in front:
//! `{"seq":N,"prevHash":"…","hash":"…",<the record's own fields>}`, byte for byte the record
//! the store hashed, so the chain verifies from the files alone.
//!
//! Files are only ever appended to and fsynced; a full or old file is closed (its size, checksum
//! and last hash go into the manifest, which is replaced atomically) and the next one started.
//! The only repair ever made is cutting a torn last line left by a crash: a line that was never
//! complete was never delivered.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use strongbox_store::AuditRow;
use strongbox_store::chain::{GENESIS, link};

pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "strongbox-audit-files/1";
const LOCK: &str = ".lock";

/// The directory of one chain under a storage account's directory.
pub fn chain_dir(account_dir: &Path, resource_id: &str, chain: &str) -> PathBuf {
    let mut dir = account_dir.join("insights-logs-auditevent");
    dir.push("resourceId=");
    for part in resource_id.split('/').filter(|p| !p.is_empty()) {
        dir.push(part.to_ascii_uppercase());
    }
    dir.push(format!("chain={chain}"));
    dir
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClosedFile {
    pub name: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub records: i64,
    pub bytes: u64,
    pub sha256: String,
    pub last_hash: String,
    pub opened_ms: i64,
    pub closed_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenFile {
    pub name: String,
    pub opened_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub chain: String,
    pub resource_id: String,
    pub files: Vec<ClosedFile>,
    /// The file being appended to, if any.
    pub current: Option<OpenFile>,
}

fn file_name(index: usize) -> String {
    format!("{index:08}.jsonl")
}

/// The line for one stored record.
pub fn line(row: &AuditRow) -> String {
    let json = &row.entry.record_json;
    let head = format!(
        r#"{{"seq":{},"prevHash":"{}","hash":"{}""#,
        row.seq,
        hex::encode(&row.prev_hash),
        hex::encode(&row.hash)
    );
    match json.strip_prefix('{') {
        Some("}") => format!("{head}}}\n"),
        Some(rest) => format!("{head},{rest}\n"),
        // Not an object (never written by Strongbox): carried as a string.
        None => format!(
            "{head},\"recordJson\":{}}}\n",
            serde_json::Value::String(json.clone())
        ),
    }
}

/// A parsed line: its chain position and the record JSON exactly as hashed.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// Candidate record texts (normally one); the hash decides which one the line carries.
    pub records: Vec<String>,
}

/// Parses a line (without its newline). The prefix is fixed, so the record text is recovered
/// without re-serializing anything.
pub fn parse_line(text: &str) -> Result<Parsed, String> {
    let bad = |what: &str| Err(format!("malformed line: {what}"));
    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text).is_err() {
        return bad("not a JSON object");
    }
    let Some(rest) = text.strip_prefix(r#"{"seq":"#) else {
        return bad("does not start with seq");
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(seq) = rest[..digits].parse::<i64>() else {
        return bad("bad seq");
    };
    let rest = &rest[digits..];
    let hex_field = |rest: &'_ str, key: &str| -> Option<(Vec<u8>, usize)> {
        let prefix = format!(r#","{key}":""#);
        let body = rest.strip_prefix(&prefix)?;
        let value = body.get(..64)?;
        if !body[64..].starts_with('"') {
            return None;
        }
        Some((hex::decode(value).ok()?, prefix.len() + 65))
    };
    let Some((prev_hash, used)) = hex_field(rest, "prevHash") else {
        return bad("bad prevHash");
    };
    let rest = &rest[used..];
    let Some((hash, used)) = hex_field(rest, "hash") else {
        return bad("bad hash");
    };
    let rest = &rest[used..];
    let mut records = Vec::new();
    if rest == "}" {
        records.push("{}".to_string());
    } else if let Some(fields) = rest.strip_prefix(',') {
        records.push(format!("{{{fields}"));
        if let Some(s) = fields.strip_prefix(r#""recordJson":"#)
            && let Some(s) = s.strip_suffix('}')
            && let Ok(serde_json::Value::String(raw)) = serde_json::from_str(s)
        {
            records.push(raw);
        }
    } else {
        return bad("unexpected text after hash");
    }
    Ok(Parsed {
        seq,
        prev_hash,
        hash,
        records,
    })
}

fn io(context: &str, path: &Path, e: std::io::Error) -> String {
    format!("{context} {}: {e}", path.display())
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing", dir, e))
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>, String> {
    let path = dir.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: not a valid manifest: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", &path, e)),
    }
}

/// Replaces the manifest atomically: write a temporary file, fsync, rename, fsync the directory.
fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), String> {
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let body = serde_json::to_vec_pretty(m).expect("manifest serializes");
    let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(|e| io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| io("renaming", &tmp, e))?;
    sync_dir(dir)
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = File::open(path).map_err(|e| io("opening", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| io("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Rotation limits of a storage account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    pub max_file_bytes: u64,
    pub max_file_age_ms: i64,
}

struct Current {
    file: File,
    name: String,
    opened_ms: i64,
    bytes: u64,
    first_seq: Option<i64>,
    records: i64,
}

/// Appends one chain's records to its directory. Holds an exclusive lock on the directory, so
/// two servers on one machine never write the same files.
pub struct ChainWriter {
    dir: PathBuf,
    manifest: Manifest,
    current: Option<Current>,
    /// The last record in the files: its seq and hash.
    last_seq: i64,
    last_hash: Vec<u8>,
    _lock: File,
}

impl std::fmt::Debug for ChainWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainWriter")
            .field("dir", &self.dir)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl ChainWriter {
    /// Opens (creating) the chain's directory and finds where delivery stopped. `Ok(None)` if
    /// another process holds the directory.
    pub fn open(dir: &Path, chain: &str, resource_id: &str) -> Result<Option<ChainWriter>, String> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path, e)),
        }
        let manifest = match read_manifest(dir)? {
            Some(m) if m.chain != chain => {
                return Err(format!(
                    "{} belongs to chain {}, not {chain}",
                    dir.display(),
                    m.chain
                ));
            }
            Some(m) => m,
            None => {
                let m = Manifest {
                    format: FORMAT.into(),
                    chain: chain.into(),
                    resource_id: resource_id.into(),
                    files: vec![],
                    current: None,
                };
                write_manifest(dir, &m)?;
                m
            }
        };
        let (mut last_seq, mut last_hash) = match manifest.files.last() {
            Some(f) => (
                f.last_seq,
                hex::decode(&f.last_hash).map_err(|_| "manifest: bad lastHash".to_string())?,
            ),
            None => (0, GENESIS.to_vec()),
        };
        let mut current = None;
        if let Some(open) = &manifest.current {
            let path = dir.join(&open.name);
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| io("opening", &path, e))?;
            // Find the last complete line; cut a torn tail (a write a crash interrupted).
            let mut text = Vec::new();
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.read_to_end(&mut text))
                .map_err(|e| io("reading", &path, e))?;
            let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if complete < text.len() {
                tracing::warn!(file = %path.display(), bytes = text.len() - complete, "cutting a torn last line");
                file.set_len(complete as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| io("truncating", &path, e))?;
            }
            let mut first_seq = None;
            let mut records = 0;
            for l in text[..complete]
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let p = parse_line(&String::from_utf8_lossy(l))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                first_seq.get_or_insert(p.seq);
                records += 1;
                last_seq = p.seq;
                last_hash = p.hash;
            }
            current = Some(Current {
                file,
                name: open.name.clone(),
                opened_ms: open.opened_ms,
                bytes: complete as u64,
                first_seq,
                records,
            });
        }
        Ok(Some(ChainWriter {
            dir: dir.to_path_buf(),
            manifest,
            current,
            last_seq,
            last_hash,
            _lock: lock,
        }))
    }

    /// The seq of the last record delivered: the store is read after it.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    fn close_current(&mut self, now_ms: i64) -> Result<(), String> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        cur.file
            .sync_all()
            .map_err(|e| io("syncing", &self.dir.join(&cur.name), e))?;
        let path = self.dir.join(&cur.name);
        self.manifest.files.push(ClosedFile {
            sha256: sha256_file(&path)?,
            name: cur.name,
            first_seq: cur.first_seq.unwrap_or(self.last_seq + 1),
            last_seq: self.last_seq,
            records: cur.records,
            bytes: cur.bytes,
            last_hash: hex::encode(&self.last_hash),
            opened_ms: cur.opened_ms,
            closed_ms: now_ms,
        });
        self.manifest.current = None;
        write_manifest(&self.dir, &self.manifest)
    }

    fn open_next(&mut self, now_ms: i64) -> Result<(), String> {
        let name = file_name(self.manifest.files.len() + 1);
        // The manifest names the file first: a crash in between leaves a named file that is
        // missing (reopened empty), never a file the manifest does not know.
        self.manifest.current = Some(OpenFile {
            name: name.clone(),
            opened_ms: now_ms,
        });
        write_manifest(&self.dir, &self.manifest)?;
        let path = self.dir.join(&name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("creating", &path, e))?;
        sync_dir(&self.dir)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.current = Some(Current {
            file,
            name,
            opened_ms: now_ms,
            bytes,
            first_seq: None,
            records: 0,
        });
        Ok(())
    }

    /// Appends rows (the next ones of the chain, in order), fsyncs, and rotates as the limits
    /// say. A row that does not continue the files' chain stops delivery with an error.
    pub fn append(
        &mut self,
        rows: &[AuditRow],
        limits: Rotation,
        now_ms: i64,
    ) -> Result<(), String> {
        // Check the whole batch first, so a refused batch writes nothing.
        let (mut seq, mut hash) = (self.last_seq, self.last_hash.as_slice());
        for row in rows {
            if row.seq != seq + 1 || row.prev_hash != hash {
                return Err(format!(
                    "record {} of chain {} does not continue the files (last is {seq}); delivery stopped",
                    row.seq, self.manifest.chain
                ));
            }
            (seq, hash) = (row.seq, &row.hash);
        }
        let mut rows = rows;
        while !rows.is_empty() {
            if let Some(cur) = &self.current
                && cur.records > 0
                && now_ms - cur.opened_ms >= limits.max_file_age_ms
            {
                self.close_current(now_ms)?;
            }
            if self.current.is_none() {
                self.open_next(now_ms)?;
            }
            let cur = self.current.as_mut().expect("a current file");
            let mut buf = String::new();
            let mut taken = 0;
            for row in rows {
                buf.push_str(&line(row));
                cur.first_seq.get_or_insert(row.seq);
                cur.records += 1;
                self.last_seq = row.seq;
                self.last_hash = row.hash.clone();
                taken += 1;
                if cur.bytes + buf.len() as u64 >= limits.max_file_bytes {
                    break;
                }
            }
            let path = self.dir.join(&cur.name);
            cur.file
                .write_all(buf.as_bytes())
                .and_then(|_| cur.file.sync_data())
                .map_err(|e| io("appending to", &path, e))?;
            cur.bytes += buf.len() as u64;
            if cur.bytes >= limits.max_file_bytes {
                self.close_current(now_ms)?;
            }
            rows = &rows[taken..];
        }
        Ok(())
    }
}

/// What verifying one chain directory found.
#[derive(Debug, Clone, PartialEq)]
pub struct DirReport {
    pub dir: PathBuf,
    pub chain: String,
    pub resource_id: String,
    pub files: usize,
    pub records: i64,
    /// The first break: file (or manifest), line (1-based, 0 for the file as a whole), reason.
    pub broken: Option<(PathBuf, usize, String)>,
}

/// Every chain directory (one holding a manifest) under `root`, sorted.
pub fn find_chain_dirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join(MANIFEST).is_file() {
            out.push(dir.clone());
        }
        for entry in std::fs::read_dir(&dir).map_err(|e| io("listing", &dir, e))? {
            let entry = entry.map_err(|e| io("listing", &dir, e))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Verifies one chain directory from its files alone: every line links to the one before (across
/// files, from the genesis hash), closed files match their manifest entries, and no file is
/// missing or unexpected.
pub fn verify_dir(dir: &Path) -> DirReport {
    let mut report = DirReport {
        dir: dir.to_path_buf(),
        chain: String::new(),
        resource_id: String::new(),
        files: 0,
        records: 0,
        broken: None,
    };
    let manifest_path = dir.join(MANIFEST);
    let manifest = match read_manifest(dir) {
        Ok(Some(m)) => m,
        Ok(None) => {
            report.broken = Some((manifest_path, 0, "the manifest is missing".into()));
            return report;
        }
        Err(e) => {
            report.broken = Some((manifest_path, 0, e));
            return report;
        }
    };
    report.chain = manifest.chain.clone();
    report.resource_id = manifest.resource_id.clone();
    if let Err(b) = verify_files(dir, &manifest, &mut report) {
        report.broken = Some(b);
    }
    report
}

fn verify_files(
    dir: &Path,
    manifest: &Manifest,
    report: &mut DirReport,
) -> Result<(), (PathBuf, usize, String)> {
    let listed: Vec<(String, Option<&ClosedFile>)> = manifest
        .files
        .iter()
        .map(|f| (f.name.clone(), Some(f)))
        .chain(manifest.current.iter().map(|c| (c.name.clone(), None)))
        .collect();
    for (i, (name, _)) in listed.iter().enumerate() {
        if *name != file_name(i + 1) {
            return Err((
                dir.join(MANIFEST),
                0,
                format!("unexpected file name {name} at position {}", i + 1),
            ));
        }
    }
    // A data file the manifest does not list (other than an empty one a crash left) is suspect.
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| (dir.to_path_buf(), 0, e.to_string()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    present.sort();
    for name in &present {
        let path = dir.join(name);
        let empty = std::fs::metadata(&path)
            .map(|m| m.len() == 0)
            .unwrap_or(false);
        if !listed.iter().any(|(n, _)| n == name) && !empty {
            return Err((path, 0, "file is not listed in the manifest".into()));
        }
    }
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_vec();
    for (name, closed) in &listed {
        let path = dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && closed.is_none() => continue,
            Err(e) => return Err((path, 0, format!("cannot be read: {e}"))),
        };
        report.files += 1;
        let mut first = None;
        let mut records = 0;
        let mut bytes = 0u64;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| (path.clone(), number + 1, e.to_string()))?;
            if n == 0 {
                break;
            }
            number += 1;
            bytes += n as u64;
            let at = |reason: String| (path.clone(), number, reason);
            let Some(text) = buf.strip_suffix(b"\n") else {
                return Err(at("torn line (no newline at the end)".into()));
            };
            let text = std::str::from_utf8(text).map_err(|_| at("not UTF-8".into()))?;
            let p = parse_line(text).map_err(at)?;
            if p.seq != expected_seq {
                return Err(at(format!(
                    "expected record {expected_seq}, found {}",
                    p.seq
                )));
            }
            if p.prev_hash != prev {
                return Err(at(format!(
                    "record {}: previous-hash link does not match",
                    p.seq
                )));
            }
            if !p.records.iter().any(|r| link(&prev, p.seq, r) == p.hash) {
                return Err(at(format!(
                    "record {}: content does not match its hash",
                    p.seq
                )));
            }
            first.get_or_insert(p.seq);
            records += 1;
            prev = p.hash;
            expected_seq += 1;
        }
        report.records += records;
        if let Some(c) = closed {
            let mismatch =
                |what: &str| (path.clone(), 0, format!("{what} differs from the manifest"));
            if c.records != records || c.bytes != bytes {
                return Err(mismatch("record count or size"));
            }
            if c.last_seq != expected_seq - 1 || c.last_hash != hex::encode(&prev) {
                return Err(mismatch("last record"));
            }
            if records > 0 && Some(c.first_seq) != first {
                return Err(mismatch("first record"));
            }
            match sha256_file(&path) {
                Ok(h) if h == c.sha256 => {}
                Ok(_) => return Err(mismatch("checksum")),
                Err(e) => return Err((path.clone(), 0, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_store::AuditEntry;

    fn chain(records: &[&str]) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_vec();
        records
            .iter()
            .enumerate()
            .map(|(i, json)| {
                let seq = i as i64 + 1;
                let hash = link(&prev, seq, json);
                let row = AuditRow {
                    entry: AuditEntry {
                        vault_id: "c".into(),
                        time_ms: 0,
                        operation: "op".into(),
                        result_type: "Success".into(),
                        caller_oid: None,
                        record_json: json.to_string(),
                    },
                    seq,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    #[test]
    fn lines_carry_the_exact_record_and_parse_back() {
        let rows = chain(&[
            r#"{"operationName":"SecretGet","x":"a\"b"}"#,
            "{}",
            r#""odd""#,
            r#"{"recordJson":"y"}"#,
        ]);
        for row in &rows {
            let l = line(row);
            assert!(l.ends_with('\n') && !l[..l.len() - 1].contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["seq"], row.seq);
            let p = parse_line(l.trim_end()).unwrap();
            assert_eq!(
                (p.seq, &p.prev_hash, &p.hash),
                (row.seq, &row.prev_hash, &row.hash)
            );
            assert!(p.records.contains(&row.entry.record_json), "{l}");
        }
        let v: serde_json::Value = serde_json::from_str(&line(&rows[0])).unwrap();
        assert_eq!(v["operationName"], "SecretGet");
        assert!(parse_line(r#"{"seq":1}"#).is_err());
        assert!(parse_line("not json").is_err());
    }

    #[test]
    fn writer_rotates_resumes_and_verifier_finds_tampering() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = chain_dir(
            tmp.path(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
            "c",
        );
        assert!(dir.ends_with("resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/V/chain=c"));
        let records: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"operationName":"SecretGet","n":{i},"pad":"{}"}}"#,
                    "x".repeat(40)
                )
            })
            .collect();
        let rows = chain(&records.iter().map(String::as_str).collect::<Vec<_>>());
        let limits = Rotation {
            max_file_bytes: 1000,
            max_file_age_ms: 60_000,
        };
        {
            let mut w = ChainWriter::open(&dir, "c", "/v").unwrap().unwrap();
            // A second writer on the same directory is refused while the first holds it.
            assert!(ChainWriter::open(&dir, "c", "/v").unwrap().is_none());
            w.append(&rows[..25], limits, 1_000).unwrap();
            // One more row, so a file is open (not just closed by the size limit).
            w.append(
                &rows[25..26],
                Rotation {
                    max_file_bytes: 100_000,
                    ..limits
                },
                1_000,
            )
            .unwrap();
            assert_eq!(w.last_seq(), 26);
        }
        // A torn line from a crash is cut on reopen; delivery continues after the last whole line.
        let m = read_manifest(&dir).unwrap().unwrap();
        let cur = dir.join(&m.current.as_ref().unwrap().name);
        OpenOptions::new()
            .append(true)
            .open(&cur)
            .unwrap()
            .write_all(b"{\"seq\":27,\"prev")
            .unwrap();
        let mut w = ChainWriter::open(&dir, "c", "/v").unwrap().unwrap();
        assert_eq!(w.last_seq(), 26);
        // Out of order rows are refused, and nothing of the batch is written.
        assert!(w.append(&rows[27..29], limits, 2_000).is_err());
        assert!(w.append(&rows[25..27], limits, 2_000).is_err());
        w.append(&rows[26..35], limits, 2_000).unwrap();
        // Time-based rotation: the next write after the age limit starts a new file.
        let before = read_manifest(&dir).unwrap().unwrap().files.len();
        w.append(&rows[35..], limits, 2_000 + 60_000).unwrap();
        drop(w);
        let m = read_manifest(&dir).unwrap().unwrap();
        assert!(m.files.len() > before, "age rotation");
        assert!(m.files.len() >= 4, "size rotation: {} files", m.files.len());
        let report = verify_dir(&dir);
        assert_eq!(report.broken, None);
        assert_eq!((report.records, report.chain.as_str()), (40, "c"));
        assert_eq!(find_chain_dirs(tmp.path()).unwrap(), vec![dir.clone()]);

        // Tamper with a line in the middle of the second file.
        let second = dir.join(&m.files[1].name);
        let text = std::fs::read_to_string(&second).unwrap();
        std::fs::write(
            &second,
            text.replacen("SecretGet", "SecretSet", 2)
                .replacen("SecretSet", "SecretGet", 1),
        )
        .unwrap();
        let (file, line_no, reason) = verify_dir(&dir).broken.unwrap();
        assert_eq!((file, line_no), (second.clone(), 2));
        assert!(reason.contains("does not match its hash"), "{reason}");
        std::fs::write(&second, &text).unwrap();
        assert_eq!(verify_dir(&dir).broken, None);

        // A removed file is a gap in the chain.
        std::fs::remove_file(&second).unwrap();
        let (file, line_no, _) = verify_dir(&dir).broken.unwrap();
        assert_eq!((file, line_no), (second.clone(), 0));
        std::fs::write(&second, &text).unwrap();
        // A cut tail of a closed file disagrees with the manifest.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(
            &second,
            format!("{}\n", lines[..lines.len() - 1].join("\n")),
        )
        .unwrap();
        assert!(verify_dir(&dir).broken.is_some());
    }
}
