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
    /// Serve the activation page on 127.0.0.1 and re-sync the device secrets periodically.
    Run {
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
    },
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
        AgentCommand::Run {
            data_dir,
            server_ca,
            port,
            poll_interval,
        } => {
            let ca = read_ca(server_ca)?;
            strongbox_agent::web::run(data_dir, ca, port, Duration::from_secs(poll_interval))
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
