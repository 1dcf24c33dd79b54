//! The file target: synced secret `name` lives in `{root}/{name}/`, laid out exactly as
//! kubelet's AtomicWriter lays out a Secret volume, so tools written for those (configmap-reload,
//! `fsnotify` on `..data`) work unchanged:
//!
//! ```text
//! {root}/{name}/..2026_11_24_10_00_00.3f9a1c0b7e/username   the real files (file_mode)
//! {root}/{name}/..data -> ..2026_11_24_10_00_00.3f9a1c0b7e  the one atomic switch
//! {root}/{name}/username -> ..data/username                 what consumers open
//! ```
//!
//! Unlike kubelet (which writes to tmpfs) every file, the timestamped directory and the parent
//! after the rename are fsynced, so after a power cut `..data` never points at empty files
//! (research edge-sync §5.2, §7.10). Modes are set with fchmod (the umask does not matter), the
//! group before the switch. Nothing is ever followed through a symlink when cleaning up, and a
//! directory we did not make is never touched.

use super::{Payload, Target, TargetError, validate_name};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
/// Where a key's user-visible symlink points, relative to the synced secret's directory.
fn link_target(key: &str) -> PathBuf {
    Path::new(DATA).join(key)
}

/// Modes and group of what the target writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Mode of each key's file. Default 0600.
    pub file_mode: u32,
    /// Mode of `{root}/{name}` and of the timestamped directories. Default 0750: consumers in
    /// `gid` may traverse, nobody else.
    pub dir_mode: u32,
    /// Group of the directories and files (set before the switch), for consumers that do not
    /// run as the agent's user.
    pub gid: Option<u32>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            file_mode: 0o600,
            dir_mode: 0o750,
            gid: None,
        }
    }
}

/// Delivers synced secrets as files under one root directory.
pub struct FileTarget {
    root: PathBuf,
    options: FileOptions,
    /// Writes are serialised: two applies of one name must not interleave their switches.
    lock: Arc<Mutex<()>>,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> TargetError {
    TargetError::Io(format!("{what} {}: {e}", path.display()))
}

/// `..YYYY_MM_DD_HH_MM_SS.<random>`, kubelet's timestamped directory name.
fn is_ts_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let Some((stamp, random)) = rest.split_once('.') else {
        return false;
    };
    let shape = stamp.bytes().enumerate().all(|(i, b)| {
        if i % 3 == 1 && i > 3 {
            b == b'_'
        } else {
            b.is_ascii_digit()
        }
    });
    stamp.len() == 19
        && stamp.as_bytes()[4] == b'_'
        && shape
        && !random.is_empty()
        && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn new_ts_name() -> String {
    use strongbox_domain::clock::{Clock, SystemClock};
    let t = time::OffsetDateTime::from_unix_timestamp(SystemClock.now())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        hex::encode(strongbox_crypto::random_bytes::<5>())
    )
}

/// What `{root}/{name}` is.
enum Dir {
    Absent,
    /// Ours; `..data` names this timestamped directory (none after a crash before the first
    /// switch, or a half-done removal).
    Ours(Option<String>),
}

fn not_ours(dir: &Path, why: &str) -> TargetError {
    TargetError::NotOurs(format!(
        "{} {why}; it was not written by strongbox-agent and is left alone",
        dir.display()
    ))
}

fn lstat(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decides whether `dir` is ours without following any symlink: it holds a `..data` symlink to
/// a timestamped directory, or (a crash before the first switch, a half-done removal) only
/// names we write.
fn inspect(dir: &Path) -> Result<Dir, TargetError> {
    let meta = lstat(dir).map_err(|e| io_err("reading", dir, e))?;
    let Some(meta) = meta else {
        return Ok(Dir::Absent);
    };
    if !meta.file_type().is_dir() {
        return Err(not_ours(dir, "exists and is not a directory"));
    }
    let data = dir.join(DATA);
    match lstat(&data).map_err(|e| io_err("reading", &data, e))? {
        Some(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&data).map_err(|e| io_err("reading", &data, e))?;
            return match target.to_str() {
                Some(t) if is_ts_name(t) => Ok(Dir::Ours(Some(t.to_string()))),
                _ => Err(not_ours(dir, "has a ..data link to somewhere else")),
            };
        }
        Some(_) => return Err(not_ours(dir, "has a ..data that is not a symlink")),
        None => {}
    }
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ft = entry.file_type().map_err(|e| io_err("reading", dir, e))?;
        let leftover = name == DATA_TMP
            || is_ts_name(&name)
            || (ft.is_symlink()
                && fs::read_link(entry.path()).is_ok_and(|t| t == link_target(&name)));
        if !leftover {
            return Err(not_ours(dir, "is not empty and has no ..data"));
        }
    }
    Ok(Dir::Ours(None))
}

/// Removes `path` without following it: a symlink or file is unlinked, a directory removed
/// with its contents (std's `remove_dir_all` never follows symlinks inside).
fn remove_entry(path: &Path) -> io::Result<()> {
    match lstat(path)? {
        None => Ok(()),
        Some(m) if m.file_type().is_dir() => fs::remove_dir_all(path),
        Some(_) => fs::remove_file(path),
    }
}

fn fsync_dir(path: &Path) -> Result<(), TargetError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing", path, e))
}

/// Reads a regular file, refusing to follow a symlink.
fn read_nofollow(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut buf = Zeroizing::new(Vec::new());
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Key → value, as read from a timestamped directory.
type Version = BTreeMap<String, Zeroizing<Vec<u8>>>;

/// The files of a timestamped directory; `None` when it is gone.
fn read_version(ts_dir: &Path) -> Result<Option<Version>, TargetError> {
    let entries = match fs::read_dir(ts_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("listing", ts_dir, e)),
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing", ts_dir, e))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let value =
            read_nofollow(&entry.path()).map_err(|e| io_err("reading", &entry.path(), e))?;
        out.insert(name, value);
    }
    Ok(Some(out))
}

impl FileTarget {
    /// Delivers under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>, options: FileOptions) -> FileTarget {
        FileTarget {
            root: root.into(),
            options,
            lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of synced secret `name` (consumers watch it for `..data`).
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Runs `f` on a blocking thread with the write lock held.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path, FileOptions) -> Result<T, TargetError> + Send + 'static,
    ) -> Result<T, TargetError> {
        let (root, options, lock) = (self.root.clone(), self.options, self.lock.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            f(&root, options)
        })
        .await
        .map_err(|e| TargetError::Io(format!("the file writer stopped: {e}")))?
    }
}

fn set_mode_and_group(
    file: &File,
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> Result<(), TargetError> {
    let meta = file.metadata().map_err(|e| io_err("reading", path, e))?;
    if meta.mode() & 0o7777 != mode {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_err("setting the mode of", path, e))?;
    }
    if let Some(g) = gid.filter(|g| *g != meta.gid()) {
        std::os::unix::fs::fchown(file, None, Some(g))
            .map_err(|e| io_err("setting the group of", path, e))?;
    }
    Ok(())
}

/// Opens a directory we made (never through a symlink) to fix its mode and group.
fn fix_dir(path: &Path, options: FileOptions) -> Result<(), TargetError> {
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| io_err("opening", path, e))?;
    set_mode_and_group(&d, path, options.dir_mode, options.gid)
}

/// Key symlinks: the missing ones made, stale ones (`..data/<key>` for a key that is gone)
/// removed. A key whose name is taken by something that is not our symlink was refused before.
fn link_keys(dir: &Path, keys: &[&String]) -> Result<(), TargetError> {
    for key in keys {
        let path = dir.join(key.as_str());
        let want = link_target(key);
        match lstat(&path).map_err(|e| io_err("reading", &path, e))? {
            Some(m) if m.file_type().is_symlink() => {
                if fs::read_link(&path).is_ok_and(|t| t == want) {
                    continue;
                }
                fs::remove_file(&path).map_err(|e| io_err("replacing", &path, e))?;
            }
            Some(_) => return Err(not_ours(&path, "is not a symlink into ..data")),
            None => {}
        }
        symlink(&want, &path).map_err(|e| io_err("linking", &path, e))?;
    }
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || keys.iter().any(|k| **k == name) {
            continue;
        }
        let ours = entry.file_type().is_ok_and(|t| t.is_symlink())
            && fs::read_link(entry.path()).is_ok_and(|t| t == link_target(&name));
        if ours {
            fs::remove_file(entry.path()).map_err(|e| io_err("removing", &entry.path(), e))?;
        }
    }
    Ok(())
}

/// Removes what a crash can leave: a `..data_tmp` link and timestamped directories `..data`
/// does not name.
fn clean_leftovers(dir: &Path, current: Option<&str>) -> Result<(), TargetError> {
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == DATA_TMP || (is_ts_name(&name) && Some(name.as_str()) != current) {
            remove_entry(&entry.path()).map_err(|e| io_err("removing", &entry.path(), e))?;
        }
    }
    Ok(())
}

fn write_version(ts_dir: &Path, p: &Payload, options: FileOptions) -> Result<(), TargetError> {
    for (key, value) in &p.data {
        let path = ts_dir.join(key);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(options.file_mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_err("creating", &path, e))?;
        // The create mode went through the umask; fchmod sets it exactly.
        f.set_permissions(fs::Permissions::from_mode(options.file_mode))
            .map_err(|e| io_err("setting the mode of", &path, e))?;
        if let Some(g) = options.gid {
            std::os::unix::fs::fchown(&f, None, Some(g))
                .map_err(|e| io_err("setting the group of", &path, e))?;
        }
        f.write_all(value)
            .map_err(|e| io_err("writing", &path, e))?;
        f.sync_all().map_err(|e| io_err("syncing", &path, e))?;
    }
    fsync_dir(ts_dir)
}

fn apply_blocking(root: &Path, options: FileOptions, p: &Payload) -> Result<bool, TargetError> {
    p.validate()?;
    fs::create_dir_all(root).map_err(|e| io_err("creating", root, e))?;
    let dir = root.join(&p.name);
    let current = match inspect(&dir)? {
        Dir::Ours(current) => current,
        Dir::Absent => {
            match fs::create_dir(&dir) {
                Ok(()) => fsync_dir(root)?,
                // Made meanwhile by someone else: inspect again below.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("creating", &dir, e)),
            }
            match inspect(&dir)? {
                Dir::Ours(current) => current,
                Dir::Absent => {
                    return Err(io_err("creating", &dir, io::ErrorKind::NotFound.into()));
                }
            }
        }
    };
    fix_dir(&dir, options)?;
    clean_leftovers(&dir, current.as_deref())?;
    let keys: Vec<&String> = p.data.keys().collect();
    // A key name held by something that is not our symlink: refuse before switching.
    for key in &keys {
        let path = dir.join(key.as_str());
        if let Some(m) = lstat(&path).map_err(|e| io_err("reading", &path, e))?
            && !m.file_type().is_symlink()
        {
            return Err(not_ours(&path, "is in the way of a key"));
        }
    }

    let old = match &current {
        Some(ts) => read_version(&dir.join(ts))?,
        None => None,
    };
    if let (Some(ts), Some(old)) = (&current, &old)
        && *old == p.data
    {
        // Unchanged: write nothing, but repair what a consumer-side accident can break.
        let ts_dir = dir.join(ts);
        fix_dir(&ts_dir, options)?;
        for key in &keys {
            let path = ts_dir.join(key.as_str());
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| io_err("opening", &path, e))?;
            set_mode_and_group(&f, &path, options.file_mode, options.gid)?;
        }
        link_keys(&dir, &keys)?;
        return Ok(false);
    }

    let ts = new_ts_name();
    let ts_dir = dir.join(&ts);
    fs::create_dir(&ts_dir).map_err(|e| io_err("creating", &ts_dir, e))?;
    let staged = fix_dir(&ts_dir, options)
        .and_then(|()| write_version(&ts_dir, p, options))
        .and_then(|()| {
            let tmp = dir.join(DATA_TMP);
            symlink(&ts, &tmp).map_err(|e| io_err("linking", &tmp, e))?;
            // The switch: every key changes at this one rename.
            fs::rename(&tmp, dir.join(DATA)).map_err(|e| io_err("switching", &tmp, e))
        });
    if let Err(e) = staged {
        let _ = remove_entry(&dir.join(DATA_TMP));
        let _ = remove_entry(&ts_dir);
        return Err(e);
    }
    fsync_dir(&dir)?;
    link_keys(&dir, &keys)?;
    if let Some(old_ts) = current {
        let old_dir = dir.join(old_ts);
        remove_entry(&old_dir).map_err(|e| io_err("removing", &old_dir, e))?;
    }
    fsync_dir(&dir)?;
    Ok(true)
}

fn present_blocking(
    root: &Path,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, TargetError> {
    validate_name(name).map_err(TargetError::Invalid)?;
    let dir = root.join(name);
    let Dir::Ours(Some(ts)) = inspect(&dir)? else {
        return Ok(None);
    };
    let Some(files) = read_version(&dir.join(&ts))? else {
        return Ok(None);
    };
    // What a consumer sees: a key whose symlink is gone is gone.
    let mut out = BTreeMap::new();
    for (key, value) in files {
        if fs::read_link(dir.join(&key)).is_ok_and(|t| t == link_target(&key)) {
            out.insert(key, value.to_vec());
        }
    }
    Ok(Some(out))
}

fn remove_blocking(root: &Path, name: &str) -> Result<(), TargetError> {
    validate_name(name).map_err(TargetError::Invalid)?;
    let dir = root.join(name);
    match inspect(&dir)? {
        Dir::Absent => Ok(()),
        Dir::Ours(_) => {
            // One rename takes the whole dir away at once (a reader never sees half of it);
            // the hidden copy is deleted after.
            let trash = root.join(format!(
                "..{name}.removed.{}",
                strongbox_crypto::random_hex_id()
            ));
            fs::rename(&dir, &trash).map_err(|e| io_err("removing", &dir, e))?;
            fsync_dir(root)?;
            fs::remove_dir_all(&trash).map_err(|e| io_err("removing", &trash, e))
        }
    }
}

#[async_trait::async_trait]
impl Target for FileTarget {
    fn describe(&self) -> String {
        format!("files:{}", self.root.display())
    }

    async fn apply(&self, p: &Payload) -> Result<bool, TargetError> {
        let p = p.clone();
        self.blocking(move |root, options| apply_blocking(root, options, &p))
            .await
    }

    async fn remove(&self, name: &str) -> Result<(), TargetError> {
        let name = name.to_string();
        self.blocking(move |root, _| remove_blocking(root, &name))
            .await
    }

    async fn present(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, TargetError> {
        let name = name.to_string();
        self.blocking(move |root, _| present_blocking(root, &name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::SecretType;
    use super::super::contract::{self, payload};
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn the_shared_contract_holds_for_files() {
        let root = tempfile::tempdir().unwrap();
        let t = FileTarget::new(root.path().join("run"), FileOptions::default());
        assert_eq!(
            t.describe(),
            format!("files:{}", root.path().join("run").display())
        );
        contract::run(&t, "edp1secrets").await;
    }

    #[test]
    fn timestamped_names_are_recognised_exactly() {
        let n = new_ts_name();
        assert!(is_ts_name(&n), "{n}");
        assert!(is_ts_name("..2026_11_24_10_00_00.123456789"));
        for bad in [
            "..data",
            "..data_tmp",
            "2026_11_24_10_00_00.1",
            "..2026_11_24_10_00_00.",
            "..2026-11-24_10_00_00.1",
            "..2026_11_24_10_00_0.1",
            "..2026_11_24_10_00_00.a/b",
        ] {
            assert!(!is_ts_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn layout_and_modes_are_exact_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        // The process umask (022 here) would strip g+w from a plain create.
        let own_gid = fs::metadata(root.path()).unwrap().gid();
        let as_root = fs::metadata(root.path()).unwrap().uid() == 0;
        let gid = if as_root { 1 } else { own_gid };
        let t = FileTarget::new(
            root.path(),
            FileOptions {
                file_mode: 0o660,
                dir_mode: 0o770,
                gid: Some(gid),
            },
        );
        let p = payload(
            "db",
            SecretType::BasicAuth,
            &[("username", "u1"), ("password", "p1")],
        );
        assert!(t.apply(&p).await.unwrap());
        let dir = root.path().join("db");
        let names = entries(&dir);
        assert_eq!(names.len(), 4, "{names:?}");
        // Sorted: the timestamped directory ("..2…") before "..data".
        assert!(is_ts_name(&names[0]), "{names:?}");
        assert_eq!(names[1], DATA);
        assert_eq!(&names[2..], ["password", "username"]);
        let ts = fs::read_link(dir.join(DATA)).unwrap();
        assert_eq!(ts.to_str().unwrap(), names[0]);
        assert_eq!(
            fs::read_link(dir.join("username")).unwrap(),
            Path::new("..data/username")
        );
        assert_eq!(fs::read(dir.join("password")).unwrap(), b"p1");
        assert_eq!(mode(&dir), 0o770);
        assert_eq!(mode(&dir.join(&ts)), 0o770);
        for k in ["username", "password"] {
            let f = dir.join(&ts).join(k);
            assert_eq!(mode(&f), 0o660, "{k}");
            assert_eq!(fs::metadata(&f).unwrap().gid(), gid);
        }
        assert_eq!(fs::metadata(dir.join(&ts)).unwrap().gid(), gid);

        // Defaults: 0600 files, 0750 directories.
        let t = FileTarget::new(root.path(), FileOptions::default());
        let p = payload("plain", SecretType::Opaque, &[("k", "v")]);
        t.apply(&p).await.unwrap();
        let dir = root.path().join("plain");
        assert_eq!(mode(&dir.join("..data/k")), 0o600);
        assert_eq!(mode(&dir), 0o750);
        // A mode changed by hand is put back without rewriting the content.
        fs::set_permissions(dir.join("..data/k"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!t.apply(&p).await.unwrap());
        assert_eq!(mode(&dir.join("..data/k")), 0o600);
    }

    #[tokio::test]
    async fn unchanged_content_writes_nothing_but_restores_missing_links() {
        let root = tempfile::tempdir().unwrap();
        let t = FileTarget::new(root.path(), FileOptions::default());
        let p = payload("s", SecretType::Opaque, &[("a", "1"), ("b", "2")]);
        t.apply(&p).await.unwrap();
        let dir = root.path().join("s");
        let ts = fs::read_link(dir.join(DATA)).unwrap();
        fs::remove_file(dir.join("a")).unwrap();
        let seen = t.present("s").await.unwrap().unwrap();
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            ["b"],
            "a consumer no longer sees a"
        );
        assert!(!t.apply(&p).await.unwrap());
        assert_eq!(fs::read_link(dir.join(DATA)).unwrap(), ts, "no new version");
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"1");
    }

    #[tokio::test]
    async fn removed_keys_lose_their_links_and_the_old_version_goes() {
        let root = tempfile::tempdir().unwrap();
        let t = FileTarget::new(root.path(), FileOptions::default());
        t.apply(&payload("s", SecretType::Opaque, &[("a", "1"), ("b", "2")]))
            .await
            .unwrap();
        let dir = root.path().join("s");
        let old = fs::read_link(dir.join(DATA)).unwrap();
        t.apply(&payload("s", SecretType::Opaque, &[("b", "3"), ("c", "4")]))
            .await
            .unwrap();
        let names = entries(&dir);
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(&names[2..], ["b", "c"]);
        assert!(lstat(&dir.join("a")).unwrap().is_none());
        assert!(!dir.join(old).exists());
        assert_eq!(fs::read(dir.join("b")).unwrap(), b"3");
    }

    #[tokio::test]
    async fn a_crash_leftover_is_cleaned_without_following_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        let t = FileTarget::new(root.path().join("r"), FileOptions::default());
        let p = payload("s", SecretType::Opaque, &[("k", "v1")]);
        t.apply(&p).await.unwrap();
        let dir = root.path().join("r/s");
        let current = fs::read_link(dir.join(DATA)).unwrap();
        // A writer died after staging a version and linking ..data_tmp, before the rename; an
        // older one died earlier; and an orphan "timestamped" name is a symlink to elsewhere.
        let orphan = dir.join("..2020_01_01_00_00_00.dead");
        fs::create_dir(&orphan).unwrap();
        fs::write(orphan.join("k"), "half").unwrap();
        symlink("..2020_01_01_00_00_00.dead", dir.join(DATA_TMP)).unwrap();
        fs::create_dir(dir.join("..2019_01_01_00_00_00.old")).unwrap();
        symlink(outside.path(), dir.join("..2021_01_01_00_00_00.link")).unwrap();

        assert!(!t.apply(&p).await.unwrap(), "content unchanged");
        let names = entries(&dir);
        assert_eq!(
            names,
            [
                current.to_str().unwrap().into(),
                DATA.to_string(),
                "k".into()
            ]
        );
        assert_eq!(fs::read(outside.path().join("precious")).unwrap(), b"keep");
        assert_eq!(fs::read(dir.join("k")).unwrap(), b"v1");

        // A crash before the very first switch: only leftovers, no ..data. Still ours.
        let fresh = root.path().join("r/t");
        fs::create_dir(&fresh).unwrap();
        fs::create_dir(fresh.join("..2020_01_01_00_00_00.dead")).unwrap();
        symlink("..2020_01_01_00_00_00.dead", fresh.join(DATA_TMP)).unwrap();
        assert_eq!(t.present("t").await.unwrap(), None);
        assert!(
            t.apply(&payload("t", SecretType::Opaque, &[("k", "v")]))
                .await
                .unwrap()
        );
        assert_eq!(entries(&fresh).len(), 3);
    }

    #[tokio::test]
    async fn a_directory_we_did_not_make_is_never_touched() {
        let root = tempfile::tempdir().unwrap();
        let t = FileTarget::new(root.path(), FileOptions::default());
        let p = payload("app", SecretType::Opaque, &[("k", "v")]);
        let dir = root.path().join("app");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("config.yaml"), "mine").unwrap();
        for e in [
            t.apply(&p).await.unwrap_err(),
            t.remove("app").await.unwrap_err(),
            t.present("app").await.unwrap_err(),
        ] {
            assert!(matches!(e, TargetError::NotOurs(_)), "{e}");
            assert!(
                e.to_string().contains("not written by strongbox-agent"),
                "{e}"
            );
        }
        assert_eq!(entries(&dir), ["config.yaml"]);

        // A symlink in place of the directory, and a file: not ours either.
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), root.path().join("link")).unwrap();
        let e = t
            .apply(&payload("link", SecretType::Opaque, &[("k", "v")]))
            .await
            .unwrap_err();
        assert!(matches!(e, TargetError::NotOurs(_)), "{e}");
        assert!(entries(elsewhere.path()).is_empty());
        fs::write(root.path().join("file"), "x").unwrap();
        assert!(matches!(
            t.remove("file").await.unwrap_err(),
            TargetError::NotOurs(_)
        ));

        // An empty directory is taken (nothing to lose); a key name held by a real file is not.
        fs::create_dir(root.path().join("empty")).unwrap();
        assert!(
            t.apply(&payload("empty", SecretType::Opaque, &[("k", "v")]))
                .await
                .unwrap()
        );
        fs::remove_file(root.path().join("empty/k")).unwrap();
        fs::write(root.path().join("empty/k"), "squatter").unwrap();
        let e = t
            .apply(&payload("empty", SecretType::Opaque, &[("k", "v2")]))
            .await
            .unwrap_err();
        assert!(matches!(e, TargetError::NotOurs(_)), "{e}");
        assert_eq!(fs::read(root.path().join("empty/k")).unwrap(), b"squatter");
    }

    #[tokio::test]
    async fn invalid_names_and_keys_are_refused_before_touching_the_disk() {
        let root = tempfile::tempdir().unwrap();
        let t = FileTarget::new(root.path().join("r"), FileOptions::default());
        for p in [
            payload("../escape", SecretType::Opaque, &[("k", "v")]),
            payload("..", SecretType::Opaque, &[("k", "v")]),
            payload("ok", SecretType::Opaque, &[("../k", "v")]),
            payload("ok", SecretType::Opaque, &[("..data", "v")]),
            payload("ok", SecretType::Opaque, &[(".", "v")]),
            payload("ok", SecretType::BasicAuth, &[("password", "v")]),
        ] {
            let e = t.apply(&p).await.unwrap_err();
            assert!(matches!(e, TargetError::Invalid(_)), "{e}");
        }
        assert!(matches!(
            t.remove("..").await.unwrap_err(),
            TargetError::Invalid(_)
        ));
        assert!(!root.path().join("r").exists());
    }

    // --- the atomic switch, watched the way consumers watch it ------------------------------

    const SWITCHES: u32 = 2000;
    const FILLER: usize = 8192;

    /// `user-000042-uuu…END`: a value whose every byte says whether it is whole.
    fn value(kind: &str, n: u32) -> String {
        let head = format!("{kind}-{n:06}-");
        format!(
            "{head}{}END",
            kind.chars().next().unwrap().to_string().repeat(FILLER)
        )
    }

    fn parse(kind: &str, bytes: &[u8]) -> u32 {
        let s = std::str::from_utf8(bytes).expect("utf-8");
        let n: u32 = s
            .strip_prefix(&format!("{kind}-"))
            .and_then(|r| r.get(..6))
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("a torn {kind} value ({} bytes)", bytes.len()));
        assert_eq!(s, value(kind, n), "a half-written {kind} file");
        n
    }

    fn pair(n: u32) -> Payload {
        let (u, p) = (value("user", n), value("pass", n));
        payload(
            "creds",
            SecretType::BasicAuth,
            &[("username", u.as_str()), ("password", p.as_str())],
        )
    }

    /// Reads both keys through one resolution of `..data`, as a consumer must: the version
    /// number, or `None` when the version was replaced and cleaned between the two steps.
    fn read_pair(dir: &Path) -> Option<u32> {
        let ts = fs::read_link(dir.join(DATA)).ok()?;
        let base = dir.join(ts);
        let u = fs::read(base.join("username")).ok()?;
        let p = fs::read(base.join("password")).ok()?;
        let (nu, np) = (parse("user", &u), parse("pass", &p));
        assert_eq!(nu, np, "a mixed pair: user-{nu} with pass-{np}");
        Some(nu)
    }

    /// configmap-reload's `isValidEvent`: a create (or rename into place) of `..data`.
    fn is_data_switch(ev: &notify::Event) -> bool {
        use notify::EventKind;
        use notify::event::{ModifyKind, RenameMode};
        let kind_ok = matches!(
            ev.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        kind_ok
            && ev
                .paths
                .last()
                .is_some_and(|p| p.file_name().is_some_and(|n| n == DATA))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_never_see_a_torn_file_or_a_mixed_pair_across_thousands_of_switches() {
        use notify::Watcher;
        let root = tempfile::tempdir().unwrap();
        let t = FileTarget::new(root.path(), FileOptions::default());
        assert!(t.apply(&pair(0)).await.unwrap());
        let dir = root.path().join("creds");
        let done = Arc::new(AtomicBool::new(false));

        // A watcher reacting to ..data as configmap-reload does, re-reading every key each time.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).unwrap();
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .unwrap();
        let watched = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let (mut switches, mut last) = (0u32, 0u32);
                loop {
                    match rx.recv_timeout(Duration::from_secs(20)) {
                        Ok(Ok(ev)) if is_data_switch(&ev) || ev.need_rescan() => {
                            switches += 1;
                            if let Some(n) = read_pair(&dir) {
                                assert!(n >= last, "went back from {last} to {n}");
                                last = n;
                                if n == SWITCHES {
                                    return (switches, last);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return (switches, last),
                    }
                }
            })
        };
        // A reader polling as fast as it can.
        let busy = {
            let (dir, done) = (dir.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut reads, mut retries, mut last) = (0u64, 0u64, 0u32);
                while !done.load(Ordering::Acquire) {
                    match read_pair(&dir) {
                        Some(n) => {
                            assert!(n >= last, "went back from {last} to {n}");
                            last = n;
                            reads += 1;
                        }
                        None => retries += 1,
                    }
                }
                (reads, retries, read_pair(&dir))
            })
        };

        let start = Instant::now();
        for n in 1..=SWITCHES {
            assert!(t.apply(&pair(n)).await.unwrap());
        }
        let elapsed = start.elapsed();
        done.store(true, Ordering::Release);
        let (reads, retries, final_busy) = busy.join().expect("busy reader");
        let (switches, final_watched) = watched.join().expect("watcher");
        drop(watcher);
        println!(
            "{SWITCHES} switches in {elapsed:?}; busy reader: {reads} whole pairs, {retries} retries; watcher: {switches} ..data events"
        );
        assert!(reads > 100, "the busy reader barely ran: {reads}");
        assert_eq!(final_busy, Some(SWITCHES));
        assert!(switches > 0);
        assert_eq!(final_watched, SWITCHES, "the watcher saw the final version");
        // Old versions do not pile up.
        assert_eq!(entries(&dir).len(), 4);
    }
}
