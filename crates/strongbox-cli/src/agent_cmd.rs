//! `strongbox agent activate | sync-secrets | run`: the edge device side (strongbox-agent).
//! The agent needs no credentials file: it activates with the key, then signs its own token
//! requests.

use clap::Subcommand;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Redeem an activation key (once), keep the device state sealed in the data dir, and push
    /// the device secrets to the vault.
    Activate {
        /// The key from `strongbox device activation-key`; `-` reads it from stdin.
        #[arg(long)]
        key: String,
        #[arg(long)]
        data_dir: PathBuf,
        /// CA certificate (PEM) to trust for the activation call; later calls use the CA the
        /// activation returned.
        #[arg(long)]
        server_ca: Option<PathBuf>,
    },
    /// Push the device secrets again: restore missing ones, fix stale values.
    SyncSecrets {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Read a customer secret sent over the CIK channel (`strongbox device send-secret`), open
    /// it with the device's CIK, and write its exact bytes to a 0600 file (atomically). Safe
    /// while `agent run` runs: the replay record is changed under the data dir's lock.
    Receive {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        secret_name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the activation page and the managed-identity endpoint (Azure Arc form) on
    /// 127.0.0.1 and re-sync the device secrets periodically.
    Run {
        /// A TOML file of settings named as these flags (`data-dir = "/var/lib/strongbox-agent"`);
        /// flags override it.
        #[arg(long, env = "STRONGBOX_AGENT_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        server_ca: Option<PathBuf>,
        /// Port of the local page on 127.0.0.1 (0 picks a free one and prints it).
        #[arg(long, default_value_t = 8470)]
        port: u16,
        /// Seconds between checks of the device secrets in the vault.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
        poll_interval: u64,
        /// Where synced secrets are delivered as files (one dir per synced secret) unless one
        /// names its own dir. Put it on tmpfs (e.g. under /run) so plaintext stays off disk.
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
        /// Seconds between full re-reads of every referenced vault secret (the safety net
        /// behind the change feed, and the poll interval when the server has no feed).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
        rotation_interval: u64,
        /// Poll the vault every --rotation-interval instead of following its change feed.
        #[arg(long)]
        no_change_feed: bool,
        /// Mode of each delivered file, octal (e.g. 0440 with --secrets-group for readers in a
        /// group).
        #[arg(long, default_value = "0600", value_parser = octal_mode)]
        secrets_file_mode: u32,
        /// Group id given to the delivered files and dirs (dirs get 0750), set before the switch.
        #[arg(long)]
        secrets_gid: Option<u32>,
        /// Where the managed-identity endpoint writes its Azure Arc challenge files.
        /// azure-identity reads them only from the default directory.
        #[arg(long, default_value = strongbox_agent::msi::DEFAULT_CHALLENGE_DIR)]
        msi_challenge_dir: PathBuf,
    },
}

/// A file mode in octal, owner-readable, without setuid/setgid/sticky bits.
fn octal_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode like 0600"))?;
    if m > 0o777 || m & 0o400 == 0 || m & 0o002 != 0 {
        return Err(format!(
            "{s:?}: a secret file mode must be readable by its owner and not writable by others (at most 0777)"
        ));
    }
    Ok(m)
}

fn read_ca(path: Option<PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|p| std::fs::read(&p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display())))
        .transpose()
}

pub async fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Activate {
            key,
            data_dir,
            server_ca,
        } => {
            let key = if key == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                key
            };
            let ca = read_ca(server_ca)?;
            let mut agent = strongbox_agent::activate(&data_dir, &key, ca.as_deref()).await?;
            let st = agent.state();
            println!(
                "activated device {} (identity {}, vault {})",
                st.device_name, st.principal_id, st.vault_name
            );
            let report = agent.sync().await?;
            println!("{report}");
        }
        AgentCommand::SyncSecrets { data_dir } => {
            let mut agent = strongbox_agent::Agent::open(&data_dir)?;
            let report = agent.sync().await?;
            println!("{report}");
        }
        AgentCommand::Receive {
            data_dir,
            secret_name,
            out,
        } => {
            let mut agent = strongbox_agent::Agent::open(&data_dir)?;
            let opened = agent.receive(&secret_name).await?;
            write_private(&out, &opened.plaintext)?;
            let kind = match &opened.content_type {
                Some(ct) => format!("{} bytes, {ct}", opened.plaintext.len()),
                None => "text".to_string(),
            };
            println!(
                "wrote {secret_name} ({kind}, envelope version {}) to {}",
                opened.version,
                out.display()
            );
        }
        AgentCommand::Run {
            config: _,
            data_dir,
            server_ca,
            port,
            poll_interval,
            secrets_dir,
            rotation_interval,
            no_change_feed,
            secrets_file_mode,
            secrets_gid,
            msi_challenge_dir,
        } => {
            let ca = read_ca(server_ca)?;
            let sync = strongbox_agent::web::SyncOptions {
                secrets_dir: match secrets_dir {
                    Some(d) => std::path::absolute(d)?,
                    None => std::path::absolute(data_dir.join("secrets"))?,
                },
                rotation: Duration::from_secs(rotation_interval),
                no_change_feed,
                files: strongbox_agent::targets::files::FileOptions {
                    file_mode: secrets_file_mode,
                    gid: secrets_gid,
                    ..Default::default()
                },
            };
            strongbox_agent::web::run(
                data_dir,
                ca,
                port,
                Duration::from_secs(poll_interval),
                msi_challenge_dir,
                sync,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `data` to `path` readable by the owner only: a 0600 temporary file beside it, synced,
/// then renamed over `path` and the directory synced, so a reader never sees a partial file
/// and a crash leaves the old or the new one.
fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        strongbox_crypto::random_hex_id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::anyhow!("writing {}: {e}", path.display()));
    }
    Ok(())
}
