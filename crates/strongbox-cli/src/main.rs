//! `strongbox`: the one binary. `server` runs the vault; the client commands (`secret`, `vault`,
//! `lock`, `policy`, `role`, `storage`, `diagnostic-settings`, `audit`) talk to a running server
//! over HTTPS in the style of `az keyvault`; `admin` works on the store directly, for bootstrap.
//! One file per command group.
//!
//! Exit codes: 0 success; 1 a check failed (a broken audit chain); 2 usage error; 3 any other
//! error; 4 not found (HTTP 404); 5 not authenticated or not allowed (HTTP 401/403);
//! 6 conflict (HTTP 409). Errors are one line on stderr: `error: <CODE>: <message>`, with the
//! server's error code when the server refused.

mod admin_cmd;
mod agent_cmd;
mod audit_cmd;
mod backup_cmd;
mod config_file;
mod context;
mod device_cmd;
mod diagnostics_cmd;
mod docs_cmd;
mod edge_cmd;
mod exit;
mod identity_cmd;
mod keys_cmd;
mod lock_cmd;
mod log_writer;
mod login_cmd;
mod output;
mod policy_cmd;
mod role_cmd;
mod secret_cmd;
mod server_cmd;
mod storage_cmd;
mod transfer;
mod user_cmd;
mod vault_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "strongbox",
    version,
    about = "A self-hosted secrets vault speaking the Azure Key Vault API",
    after_help = "Exit codes: 0 ok, 1 check failed, 2 usage, 3 error, 4 not found, 5 not authenticated or forbidden, 6 conflict."
)]
struct Cli {
    #[command(flatten)]
    global: context::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the vault server over HTTPS.
    Server(server_cmd::ServerArgs),
    /// Check the credentials and remember where they are (never the secret itself).
    Login(login_cmd::LoginArgs),
    /// Forget the remembered credentials.
    Logout,
    /// Secrets in a vault (the data plane).
    Secret {
        #[command(subcommand)]
        command: secret_cmd::SecretCommand,
    },
    /// Vaults (management API).
    Vault {
        #[command(subcommand)]
        command: vault_cmd::VaultCommand,
    },
    /// Edge devices: create, activation keys, delete with or without their vault.
    Device {
        #[command(subcommand)]
        command: device_cmd::DeviceCommand,
    },
    /// Alerts edge devices raise (computed from the state of their vault now).
    Alert {
        #[command(subcommand)]
        command: device_cmd::AlertCommand,
    },
    /// The edge device agent: activate, push device secrets, run the local page and resync loop.
    Agent {
        #[command(subcommand)]
        command: agent_cmd::AgentCommand,
    },
    /// Synced secrets at the edge (through a running agent): vault secrets grouped under one
    /// name, delivered as files or a Kubernetes Secret.
    #[command(name = "synced-secret")]
    SyncedSecret {
        #[command(subcommand)]
        command: edge_cmd::SyncedSecretCommand,
    },
    /// Asset and dataflow endpoints at the edge whose authentication names synced secrets.
    Endpoint {
        #[command(subcommand)]
        command: edge_cmd::EndpointCommand,
    },
    /// Management locks on a resource group or a vault.
    Lock {
        #[command(subcommand)]
        command: lock_cmd::LockCommand,
    },
    /// Access policies of a vault.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Managed identities, key credentials and managed-identity environments (offline, on the store).
    Identity {
        #[command(subcommand)]
        command: identity_cmd::IdentityCommand,
    },
    /// People who sign in: users, passwords, second factor, sessions (offline, on the store).
    User {
        #[command(subcommand)]
        command: user_cmd::UserCommand,
    },
    /// Role assignments, through the management API over HTTPS.
    Role {
        #[command(subcommand)]
        command: role_cmd::RoleCommand,
    },
    /// Storage accounts: directories on the server that receive audit files.
    Storage {
        #[command(subcommand)]
        command: storage_cmd::StorageCommand,
    },
    /// Diagnostic settings: where a vault's audit records go besides the store.
    #[command(name = "diagnostic-settings", alias = "diag")]
    Diagnostics {
        #[command(subcommand)]
        command: diagnostics_cmd::DiagnosticsCommand,
    },
    /// Audit log: query, insights, verify.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Offline administration on the store (bootstrap): vaults, service principals, policies.
    Admin {
        #[command(subcommand)]
        command: admin_cmd::AdminCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (strongbox.1 and one per command) into a directory.
    Man {
        #[arg(long, default_value = "man")]
        dir: std::path::PathBuf,
    },
    /// Service principals (the same as `admin sp`).
    #[command(hide = true)]
    Sp {
        #[command(subcommand)]
        command: admin_cmd::SpCommand,
    },
}

fn main() -> ExitCode {
    let args = match config_file::expand(&Cli::command(), std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => return exit::report(&e),
    };
    let cli = Cli::parse_from(args);
    let server = matches!(cli.command, Command::Server(_));
    let default_filter = if server {
        "info,sqlx=warn"
    } else {
        "warn,sqlx=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(|| log_writer::LogWriter)
        // Colours only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Server(args) => server_cmd::run(args).await,
        Command::Login(args) => login_cmd::login(&g, args).await,
        Command::Logout => login_cmd::logout(),
        Command::Secret { command } => secret_cmd::run(&g, command).await,
        Command::Vault { command } => vault_cmd::run(&g, command).await,
        Command::Lock { command } => lock_cmd::run(&g, command).await,
        Command::Device { command } => device_cmd::run(&g, command).await,
        Command::Alert { command } => device_cmd::alerts(&g, command).await,
        Command::Agent { command } => agent_cmd::run(command).await,
        Command::SyncedSecret { command } => edge_cmd::synced(&g, command).await,
        Command::Endpoint { command } => edge_cmd::endpoint(&g, command).await,
        Command::Policy { command } => policy_cmd::run(&g, command).await,
        Command::Identity { command } => identity_cmd::run(command).await,
        Command::User { command } => user_cmd::run(&g, command).await,
        Command::Role { command } => role_cmd::run(&g, command).await,
        Command::Storage { command } => storage_cmd::run(&g, command).await,
        Command::Diagnostics { command } => diagnostics_cmd::run(&g, command).await,
        Command::Audit { command } => audit_cmd::run(&g, command).await,
        Command::Admin { command } => admin_cmd::run(command).await,
        Command::Sp { command } => admin_cmd::run_sp(command).await,
        Command::Completions { shell } => Ok(docs_cmd::completions(
            <Cli as clap::CommandFactory>::command(),
            shell,
        )),
        Command::Man { dir } => docs_cmd::man(<Cli as clap::CommandFactory>::command(), &dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_and_man_pages_cover_every_command() {
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "strongbox",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("rotate-data-key") && bash.contains("--backup-passphrase-file"));
        let dir = std::env::temp_dir().join(format!("sbman-{}", std::process::id()));
        docs_cmd::man(Cli::command(), &dir).unwrap();
        for page in [
            "strongbox.1",
            "strongbox-admin-backup.1",
            "strongbox-admin-rekey.1",
        ] {
            let text = std::fs::read_to_string(dir.join(page)).unwrap();
            assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
        }
        assert!(
            !dir.join("strongbox-sp.1").exists(),
            "hidden commands get no page"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn management_commands_parse() {
        let ok = |args: &[&str]| {
            let mut all = vec!["strongbox"];
            all.extend_from_slice(args);
            if let Err(e) = Cli::try_parse_from(&all) {
                panic!("{args:?}: {e}");
            }
        };
        ok(&[
            "vault",
            "create",
            "-n",
            "v1",
            "-g",
            "rg",
            "--enable-purge-protection",
            "--retention-days",
            "7",
        ]);
        ok(&[
            "vault",
            "update",
            "-n",
            "v1",
            "--enable-rbac-authorization",
            "true",
            "--tags",
            "a=b",
        ]);
        ok(&["vault", "recover", "-n", "v1", "-l", "local"]);
        ok(&["vault", "purge", "-n", "v1"]);
        ok(&["vault", "list-deleted", "-o", "json"]);
        ok(&[
            "lock",
            "create",
            "-n",
            "l",
            "-t",
            "can-not-delete",
            "--vault",
            "v1",
        ]);
        ok(&["lock", "list", "-g", "rg"]);
        ok(&[
            "policy",
            "set",
            "--vault",
            "v",
            "--object-id",
            "o",
            "--secret-permissions",
            "get,list",
        ]);
        ok(&["policy", "delete", "--vault", "v", "--object-id", "o"]);
        ok(&[
            "role",
            "assign",
            "--role",
            "Key Vault Secrets User",
            "--assignee",
            "o",
            "--scope",
            "/subscriptions/s",
        ]);
        ok(&[
            "role",
            "delete",
            "--id",
            "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/x",
        ]);
        ok(&[
            "secret",
            "export",
            "--vault",
            "dev",
            "--file",
            "f",
            "--all-versions",
            "--batch-size",
            "8",
        ]);
        ok(&[
            "diag",
            "create",
            "--vault",
            "dev",
            "-n",
            "d",
            "--storage-account",
            "logs",
        ]);
        ok(&["audit", "verify", "--dir", "/tmp/x"]);
        ok(&[
            "--credentials",
            "c.json",
            "--subscription",
            "s",
            "secret",
            "list",
            "--vault",
            "dev",
        ]);
        assert!(
            Cli::try_parse_from([
                "strongbox",
                "secret",
                "set",
                "--vault",
                "dev",
                "--name",
                "n",
                "--value",
                "x"
            ])
            .is_err()
        );
    }
}
