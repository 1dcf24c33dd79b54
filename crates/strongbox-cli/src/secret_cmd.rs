//! `strongbox secret …`: the Key Vault secrets data plane, in the style of `az keyvault secret`.
//! Values never come from argv: `set` reads `--file` or stdin, exactly as given (bytes must be
//! UTF-8; a trailing newline is part of the value).

use crate::context::{self, Global};
use crate::exit::usage;
use crate::output::{self, Col, col, last, s, time};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_client::secrets;

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Vault name (or URL).
    #[arg(long)]
    pub vault: String,
    /// Secret name.
    #[arg(long, short = 'n')]
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct VaultOnly {
    /// Vault name (or URL).
    #[arg(long)]
    pub vault: String,
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Set a secret (a new version) from --file or stdin.
    Set {
        #[command(flatten)]
        t: Target,
        /// Read the value from this file (default: stdin).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        #[arg(long)]
        content_type: Option<String>,
        /// Tags as key=value (repeatable).
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
        /// Create the version disabled.
        #[arg(long)]
        disabled: bool,
        /// Not valid before (RFC 3339 or Unix seconds).
        #[arg(long)]
        not_before: Option<String>,
        /// Expires (RFC 3339 or Unix seconds).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Show a secret with its value (latest version unless --version).
    Show {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        version: Option<String>,
        /// Write the value to this file (mode 0600) instead of printing the secret.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// List secrets (no values).
    List {
        #[command(flatten)]
        v: VaultOnly,
        /// Stop after this many.
        #[arg(long)]
        maxresults: Option<usize>,
    },
    /// List the versions of a secret (no values).
    ListVersions {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        maxresults: Option<usize>,
    },
    /// Delete a secret (soft delete: it can be recovered until it is purged).
    Delete {
        #[command(flatten)]
        t: Target,
    },
    /// Recover a soft-deleted secret.
    Recover {
        #[command(flatten)]
        t: Target,
    },
    /// Permanently remove a soft-deleted secret.
    Purge {
        #[command(flatten)]
        t: Target,
    },
    /// List soft-deleted secrets.
    ListDeleted {
        #[command(flatten)]
        v: VaultOnly,
        #[arg(long)]
        maxresults: Option<usize>,
    },
    /// Show a soft-deleted secret (no value).
    ShowDeleted {
        #[command(flatten)]
        t: Target,
    },
    /// Back a secret up (all versions) into a file only this vault's server can restore.
    Backup {
        #[command(flatten)]
        t: Target,
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Restore a secret from a backup file.
    Restore {
        #[command(flatten)]
        v: VaultOnly,
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// Change a version's attributes (latest version unless --version).
    SetAttributes {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long)]
        not_before: Option<String>,
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
        /// Tags as key=value (repeatable; replaces all tags).
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
    },
    /// Export a whole vault into a passphrase-encrypted file (resumable).
    Export(crate::transfer::ExportArgs),
    /// Import an exported file into a vault (resumable).
    Import(crate::transfer::ImportArgs),
}

fn bundle_cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| {
            s(v, "/id")
                .split('/')
                .nth(4)
                .unwrap_or_default()
                .to_string()
        }),
        col("Version", &|v| {
            s(v, "/id")
                .split('/')
                .nth(5)
                .unwrap_or_default()
                .to_string()
        }),
        col("Enabled", &|v| s(v, "/attributes/enabled")),
        col("ContentType", &|v| s(v, "/contentType")),
        col("Updated", &|v| time(v, "/attributes/updated")),
        col("Expires", &|v| time(v, "/attributes/exp")),
    ]
}

fn item_cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| last(v, "/id")),
        col("Enabled", &|v| s(v, "/attributes/enabled")),
        col("ContentType", &|v| s(v, "/contentType")),
        col("Updated", &|v| time(v, "/attributes/updated")),
        col("Expires", &|v| time(v, "/attributes/exp")),
    ]
}

fn version_cols() -> Vec<Col<'static>> {
    vec![
        col("Version", &|v| last(v, "/id")),
        col("Enabled", &|v| s(v, "/attributes/enabled")),
        col("ContentType", &|v| s(v, "/contentType")),
        col("Created", &|v| time(v, "/attributes/created")),
        col("Updated", &|v| time(v, "/attributes/updated")),
    ]
}

fn deleted_cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| {
            s(v, "/recoveryId")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        }),
        col("Deleted", &|v| time(v, "/deletedDate")),
        col("ScheduledPurge", &|v| time(v, "/scheduledPurgeDate")),
        col("RecoveryId", &|v| s(v, "/recoveryId")),
    ]
}

/// The value to set: a file's bytes, or stdin until it ends.
fn read_value(file: &Option<PathBuf>) -> anyhow::Result<String> {
    let bytes = match file {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("Reading the secret value from stdin; end it with Ctrl-D.");
            }
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .context("reading stdin")?;
            b
        }
    };
    String::from_utf8(bytes)
        .map_err(|_| usage("the value is not UTF-8 text (encode binary data, e.g. as base64)"))
}

fn opt_time(s: &Option<String>) -> anyhow::Result<Option<i64>> {
    s.as_deref().map(context::parse_time).transpose()
}

pub async fn run(g: &Global, command: SecretCommand) -> anyhow::Result<ExitCode> {
    let format = g.output;
    if let SecretCommand::Export(a) = command {
        return crate::transfer::export(g, a).await;
    }
    if let SecretCommand::Import(a) = command {
        return crate::transfer::import(g, a).await;
    }
    let c = context::client(g)?;
    let url = |vault: &str| c.credentials().vault_url(vault);
    match command {
        SecretCommand::Set {
            t,
            file,
            content_type,
            tags,
            disabled,
            not_before,
            expires,
        } => {
            let value = read_value(&file)?;
            let o = secrets::SetOptions {
                content_type,
                tags: context::tags(&tags)?,
                enabled: disabled.then_some(false),
                nbf: opt_time(&not_before)?,
                exp: opt_time(&expires)?,
            };
            let mut v = c
                .json(&secrets::set(&url(&t.vault)?, &t.name, &value, &o))
                .await?;
            drop(value);
            // `set` does not echo the value back.
            if let Some(m) = v.as_object_mut() {
                m.remove("value");
            }
            output::one(format, &bundle_cols(), &v);
        }
        SecretCommand::Show { t, version, file } => {
            let v = c
                .json(&secrets::get(&url(&t.vault)?, &t.name, version.as_deref()))
                .await?;
            match file {
                Some(path) => {
                    let value = v["value"].as_str().unwrap_or_default();
                    context::write_private(&path, value.as_bytes(), false)?;
                }
                None => {
                    let mut cols = bundle_cols();
                    cols.push(col("Value", &|v| s(v, "/value")));
                    output::one(format, &cols, &v);
                }
            }
        }
        SecretCommand::List { v, maxresults } => {
            let items = c
                .list_all(&secrets::list(&url(&v.vault)?), maxresults)
                .await?;
            output::items(format, &item_cols(), &items);
        }
        SecretCommand::ListVersions { t, maxresults } => {
            let items = c
                .list_all(
                    &secrets::list_versions(&url(&t.vault)?, &t.name),
                    maxresults,
                )
                .await?;
            output::items(format, &version_cols(), &items);
        }
        SecretCommand::Delete { t } => {
            let v = c.json(&secrets::delete(&url(&t.vault)?, &t.name)).await?;
            output::one(format, &deleted_cols(), &v);
        }
        SecretCommand::Recover { t } => {
            let v = c.json(&secrets::recover(&url(&t.vault)?, &t.name)).await?;
            output::one(format, &bundle_cols(), &v);
        }
        SecretCommand::Purge { t } => {
            c.send(&secrets::purge(&url(&t.vault)?, &t.name)).await?;
        }
        SecretCommand::ListDeleted { v, maxresults } => {
            let items = c
                .list_all(&secrets::list_deleted(&url(&v.vault)?), maxresults)
                .await?;
            output::items(format, &deleted_cols(), &items);
        }
        SecretCommand::ShowDeleted { t } => {
            let v = c
                .json(&secrets::get_deleted(&url(&t.vault)?, &t.name))
                .await?;
            output::one(format, &deleted_cols(), &v);
        }
        SecretCommand::Backup { t, file, overwrite } => {
            let v = c.json(&secrets::backup(&url(&t.vault)?, &t.name)).await?;
            let blob = v["value"]
                .as_str()
                .ok_or_else(|| strongbox_client::Error::Decode("backup without a value".into()))?;
            context::write_private(&file, blob.as_bytes(), overwrite)?;
        }
        SecretCommand::Restore { v, file } => {
            let blob = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let r = c
                .json(&secrets::restore(&url(&v.vault)?, blob.trim()))
                .await?;
            output::one(format, &bundle_cols(), &r);
        }
        SecretCommand::SetAttributes {
            t,
            version,
            enabled,
            not_before,
            expires,
            content_type,
            tags,
        } => {
            let o = secrets::UpdateOptions {
                content_type,
                tags: context::tags(&tags)?,
                enabled,
                nbf: opt_time(&not_before)?,
                exp: opt_time(&expires)?,
            };
            let v = c
                .json(&secrets::update(
                    &url(&t.vault)?,
                    &t.name,
                    version.as_deref(),
                    &o,
                ))
                .await?;
            output::one(format, &bundle_cols(), &v);
        }
        SecretCommand::Export(_) | SecretCommand::Import(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
