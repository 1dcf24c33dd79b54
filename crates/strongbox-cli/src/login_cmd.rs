//! `strongbox login`: checks the credentials against the token service and remembers the path
//! of the credentials file in the profile (`{config dir}/profile.json`, 0600). The secret stays
//! in the file it came from: nothing secret is copied, cached on disk, or read from argv.

use crate::context::{self, Global};
use crate::output::{self, Format, col, s};
use anyhow::Context as _;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct LoginArgs {}

pub async fn login(g: &Global, _a: LoginArgs) -> anyhow::Result<ExitCode> {
    let (creds, file) = context::credentials(g)?;
    let summary = json!({
        "tenantId": creds.tenant_id,
        "clientId": creds.client_id,
        "authority": creds.authority,
        "subscriptionId": creds.subscription_id,
        "credentials": file.as_ref().map(|f| f.display().to_string()),
    });
    let client = strongbox_client::Client::new(creds)?;
    client.login().await?;
    if let Some(f) = file {
        let abs = if f.is_absolute() {
            f
        } else {
            std::env::current_dir()?.join(f)
        };
        let dir = context::config_dir()?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let profile = json!({"credentials": abs.display().to_string()});
        context::write_private(
            &context::profile_path()?,
            serde_json::to_string_pretty(&profile)?.as_bytes(),
            true,
        )?;
    }
    match g.output {
        Format::Json => output::json(&summary),
        Format::Table => output::table(
            &[
                col("Tenant", &|v| s(v, "/tenantId")),
                col("Client", &|v| s(v, "/clientId")),
                col("Authority", &|v| s(v, "/authority")),
                col("Credentials", &|v| s(v, "/credentials")),
            ],
            &[summary],
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logout() -> anyhow::Result<ExitCode> {
    let p: PathBuf = context::profile_path()?;
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}
