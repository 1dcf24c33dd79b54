//! `strongbox user …`: people who sign in (offline, on the store, like `identity` and `admin`;
//! a running server sees the changes at once). Passwords come from a file or stdin, never argv.

use crate::admin_cmd::{StoreArgs, default_tenant};
use crate::context::Global;
use crate::output::{self, Col, col, s};
use anyhow::Context as _;
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_domain::SystemClock;
use strongbox_store::{Store, UserRow};

#[derive(clap::Args, Debug)]
pub struct Which {
    /// The user: principal name (alice@contoso.example) or object id.
    #[arg(long, short = 'u')]
    user: String,
}

#[derive(clap::Args, Debug)]
pub struct PasswordSource {
    /// File holding the password (else it is read from stdin). A trailing newline is dropped.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (password from --password-file or stdin, at least 12 characters).
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// User principal name, e.g. alice@contoso.example.
        #[arg(long)]
        upn: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Tenant id (default: the dev tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List the users of a tenant.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        tenant: Option<String>,
    },
    Show {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    /// Disable a user: no sign-in, and every session ends.
    Disable {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    Enable {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    /// Delete a user with its sessions, refresh tokens and role assignments.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    /// Set a new password (file or stdin); every session ends and the lockout is lifted.
    ResetPassword {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// End every session: web sessions go, refresh tokens are revoked (access tokens already
    /// issued run out within their hour).
    RevokeSessions {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    /// Second factor (TOTP).
    Mfa {
        #[command(subcommand)]
        command: MfaCommand,
    },
}

#[derive(Subcommand)]
pub enum MfaCommand {
    /// Enrol (or re-enrol) TOTP: prints the otpauth:// URI, a QR code for an authenticator app,
    /// and ten one-use recovery codes. Shown once.
    Enroll {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
        /// Print JSON (uri and recovery codes) instead of the QR code.
        #[arg(long)]
        json: bool,
    },
    /// Remove the user's TOTP secret and recovery codes.
    Remove {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    /// Require a second factor for every user of the tenant (true or false).
    Require {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, action = clap::ArgAction::Set)]
        required: bool,
    },
}

fn read_password(source: &PasswordSource) -> anyhow::Result<SecretString> {
    let mut text = match &source.password_file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s
        }
    };
    let trimmed = text.trim_end_matches(['\n', '\r']).to_string();
    zeroize::Zeroize::zeroize(&mut text);
    anyhow::ensure!(
        trimmed.chars().count() >= strongbox_identity::MIN_PASSWORD_CHARS,
        "the password must have at least {} characters",
        strongbox_identity::MIN_PASSWORD_CHARS
    );
    Ok(SecretString::from(trimmed))
}

fn user_json(u: &UserRow, recovery_codes_left: Option<i64>) -> Value {
    let mut v = json!({
        "objectId": u.object_id, "tenantId": u.tenant_id, "userPrincipalName": u.upn,
        "displayName": u.display_name, "objectType": "User", "accountEnabled": u.enabled,
        "mfaEnrolled": u.totp_sealed.is_some(), "created": output::rfc3339(u.created),
    });
    if let Some(n) = recovery_codes_left {
        v["recoveryCodesLeft"] = json!(n);
    }
    v
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("UserPrincipalName", &|v| s(v, "/userPrincipalName")),
        col("DisplayName", &|v| s(v, "/displayName")),
        col("ObjectId", &|v| s(v, "/objectId")),
        col("Enabled", &|v| s(v, "/accountEnabled")),
        col("Mfa", &|v| s(v, "/mfaEnrolled")),
    ]
}

async fn open(
    store: &StoreArgs,
) -> anyhow::Result<(
    std::sync::Arc<dyn Store>,
    std::sync::Arc<strongbox_crypto::Keyring>,
)> {
    strongbox_server::open_context(&store.config()?).await
}

pub async fn run(g: &Global, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Create {
            store,
            upn,
            display_name,
            tenant,
            password,
        } => {
            let password = read_password(&password)?;
            let (s, _) = open(&store).await?;
            let tenant_id = default_tenant(&*s, tenant).await?;
            let user = strongbox_identity::create_user(
                &*s,
                &SystemClock,
                strongbox_identity::NewUser {
                    tenant_id: &tenant_id,
                    upn: &upn,
                    display_name: &display_name,
                    password: &password,
                },
            )
            .await?;
            output::one(g.output, &cols(), &user_json(&user, None));
        }
        UserCommand::List { store, tenant } => {
            let (s, _) = open(&store).await?;
            let tenant_id = default_tenant(&*s, tenant).await?;
            let users: Vec<Value> = s
                .list_users(&tenant_id)
                .await?
                .iter()
                .map(|u| user_json(u, None))
                .collect();
            output::items(g.output, &cols(), &users);
        }
        UserCommand::Show { store, which } => {
            let (s, _) = open(&store).await?;
            let u = strongbox_identity::find_user(&*s, &which.user).await?;
            let left = s.count_recovery_codes(&u.object_id).await?;
            output::one(g.output, &cols(), &user_json(&u, Some(left)));
        }
        UserCommand::Disable { store, which } => set_enabled(g, &store, &which, false).await?,
        UserCommand::Enable { store, which } => set_enabled(g, &store, &which, true).await?,
        UserCommand::Delete { store, which } => {
            let (s, _) = open(&store).await?;
            let u = strongbox_identity::find_user(&*s, &which.user).await?;
            s.delete_user(&u.object_id).await?;
        }
        UserCommand::ResetPassword {
            store,
            which,
            password,
        } => {
            let password = read_password(&password)?;
            let (s, _) = open(&store).await?;
            let u = strongbox_identity::find_user(&*s, &which.user).await?;
            strongbox_identity::reset_password(&*s, &u, &password).await?;
        }
        UserCommand::RevokeSessions { store, which } => {
            let (s, _) = open(&store).await?;
            let u = strongbox_identity::find_user(&*s, &which.user).await?;
            let (sessions, refresh) =
                strongbox_identity::revoke_sessions(&*s, &u.object_id).await?;
            output::json(&json!({"sessionsEnded": sessions, "refreshTokensRevoked": refresh}));
        }
        UserCommand::Mfa { command } => return run_mfa(command).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(
    g: &Global,
    store: &StoreArgs,
    which: &Which,
    enabled: bool,
) -> anyhow::Result<()> {
    let (s, _) = open(store).await?;
    let u = strongbox_identity::find_user(&*s, &which.user).await?;
    strongbox_identity::set_user_enabled(&*s, &u, enabled).await?;
    let u = strongbox_identity::find_user(&*s, &u.object_id).await?;
    output::one(g.output, &cols(), &user_json(&u, None));
    Ok(())
}

async fn run_mfa(command: MfaCommand) -> anyhow::Result<ExitCode> {
    match command {
        MfaCommand::Enroll { store, which, json } => {
            let (s, keyring) = open(&store).await?;
            let u = strongbox_identity::find_user(&*s, &which.user).await?;
            let e = strongbox_identity::mfa::enroll(&*s, &keyring, &u).await?;
            let codes: Vec<&str> = e.recovery_codes.iter().map(|c| c.expose_secret()).collect();
            if json {
                output::json(
                    &json!({"otpauthUri": e.otpauth_uri.expose_secret(), "recoveryCodes": codes}),
                );
            } else {
                let qr = qrcode::QrCode::new(e.otpauth_uri.expose_secret().as_bytes())
                    .context("making the QR code")?;
                let picture = qr
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build();
                println!(
                    "Scan this with an authenticator app, or enter the URI by hand:\n\n{picture}\n"
                );
                println!("{}\n", e.otpauth_uri.expose_secret());
                println!("Recovery codes (each works once; keep them somewhere safe):");
                for c in codes {
                    println!("  {c}");
                }
            }
        }
        MfaCommand::Remove { store, which } => {
            let (s, _) = open(&store).await?;
            let u = strongbox_identity::find_user(&*s, &which.user).await?;
            strongbox_identity::mfa::remove(&*s, &u).await?;
        }
        MfaCommand::Require {
            store,
            tenant,
            required,
        } => {
            let (s, _) = open(&store).await?;
            let tenant_id = default_tenant(&*s, tenant).await?;
            s.set_require_mfa(&tenant_id, required).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
