//! What every client command shares: global options, finding the credentials (flag, then
//! environment, then the login profile), the client, and parsing of common argument forms.

use crate::exit::usage;
use crate::output::Format;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strongbox_client::{Client, Credentials};
use strongbox_domain::Clock as _;

#[derive(clap::Args, Clone, Debug)]
pub struct Global {
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Credentials file (the dev-credentials.json shape). Default: STRONGBOX_CREDENTIALS, the
    /// AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/STRONGBOX_AUTHORITY variables, or
    /// the file remembered by `strongbox login`.
    #[arg(long, global = true, value_name = "PATH")]
    pub credentials: Option<PathBuf>,
    /// Subscription (default: the one the credentials name).
    #[arg(long, global = true)]
    pub subscription: Option<String>,
}

/// Where `login` keeps its profile: STRONGBOX_CONFIG_DIR, else $XDG_CONFIG_HOME/strongbox, else
/// ~/.config/strongbox.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("STRONGBOX_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("strongbox"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set STRONGBOX_CONFIG_DIR")?;
    Ok(PathBuf::from(home).join(".config").join("strongbox"))
}

pub fn profile_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("profile.json"))
}

/// The credentials in force, and the file they came from (if any).
pub fn credentials(g: &Global) -> anyhow::Result<(Credentials, Option<PathBuf>)> {
    if let Some(p) = &g.credentials {
        return Ok((Credentials::from_file(p)?, Some(p.clone())));
    }
    if let Some(c) = Credentials::from_env()? {
        let file = std::env::var_os(strongbox_client::ENV_FILE).map(PathBuf::from);
        return Ok((c, file));
    }
    let profile = profile_path()?;
    if let Ok(text) = std::fs::read(&profile) {
        let v: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a profile", profile.display()))?;
        if let Some(p) = v["credentials"].as_str() {
            let p = PathBuf::from(p);
            return Ok((Credentials::from_file(&p)?, Some(p)));
        }
    }
    Err(strongbox_client::Error::Config(
        "no credentials: pass --credentials PATH, set STRONGBOX_CREDENTIALS, or run `strongbox login --credentials PATH`".into(),
    )
    .into())
}

pub fn client(g: &Global) -> anyhow::Result<Client> {
    let (c, _) = credentials(g)?;
    Ok(Client::new(c)?)
}

pub fn subscription(g: &Global, c: &Client) -> anyhow::Result<String> {
    match &g.subscription {
        Some(s) => Ok(s.clone()),
        None => Ok(c.credentials().subscription()?.to_string()),
    }
}

/// The resource group given, or the one the credentials name.
pub fn resource_group(given: &Option<String>, c: &Client) -> anyhow::Result<String> {
    given
        .clone()
        .or_else(|| c.credentials().resource_group.clone())
        .ok_or_else(|| usage("no --resource-group given and the credentials name none"))
}

/// `key=value` pairs into tags.
pub fn tags(pairs: &[String]) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| usage(format!("tag {p:?} is not key=value")))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(Some(out))
}

pub fn now_ms() -> i64 {
    strongbox_domain::SystemClock.now_ms()
}

/// An absolute time: RFC 3339, or Unix seconds. Returns Unix seconds.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            usage(format!(
                "{s:?} is not a time (use RFC 3339, e.g. 2026-01-31T12:00:00Z, or Unix seconds)"
            ))
        })
}

/// A query time: RFC 3339, Unix seconds, or an age before now (`90s`, `15m`, `2h`, `7d`).
/// Returns RFC 3339 (what the audit API takes).
pub fn parse_query_time(s: &str, now_ms: i64) -> anyhow::Result<String> {
    let units = [
        ('s', 1_000i64),
        ('m', 60_000),
        ('h', 3_600_000),
        ('d', 86_400_000),
    ];
    if let Some((n, unit)) = s.char_indices().last().and_then(|(i, c)| {
        units
            .iter()
            .find(|(u, _)| *u == c)
            .map(|(_, ms)| (&s[..i], *ms))
    }) && let Ok(n) = n.parse::<i64>()
    {
        return Ok(rfc3339_ms(now_ms - n * unit));
    }
    // RFC 3339 keeps its sub-second part (records are timed to the millisecond).
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(rfc3339_ms((t.unix_timestamp_nanos() / 1_000_000) as i64));
    }
    Ok(rfc3339_ms(parse_time(s)? * 1000))
}

pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Writes a file only the user can read, refusing to overwrite unless asked.
/// Creates a new file only its owner can read (fails if it exists).
pub fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .with_context(|| format!("creating {}", path.display()))
}

pub fn write_private(path: &Path, bytes: &[u8], overwrite: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if overwrite {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_tags() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2026-01-31T12:00:00Z").unwrap(), 1_769_860_800);
        assert!(parse_time("yesterday").is_err());
        let now = 1_769_860_800_000;
        assert_eq!(parse_query_time("2h", now).unwrap(), "2026-01-31T10:00:00Z");
        assert_eq!(
            parse_query_time("1769860800", now).unwrap(),
            "2026-01-31T12:00:00Z"
        );
        assert_eq!(
            tags(&["a=b".into(), "c=d=e".into()]).unwrap().unwrap()["c"],
            "d=e"
        );
        assert!(tags(&["nope".into()]).is_err());
        assert_eq!(tags(&[]).unwrap(), None);
    }
}
