//! `strongbox device …`: edge device resources (`Microsoft.DataBoxEdge/dataBoxEdgeDevices`):
//! create (with its system-assigned identity), show, list, generate an activation key (a
//! long-running operation shown step by step), and delete, which asks before taking the
//! device's vault along.

use crate::context::{self, Global};
use crate::output::{self, Col, Format, col, s};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use strongbox_client::arm::{self, Group};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Create a device (and its system-assigned identity).
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
    },
    /// Show a device: identity, status, vault.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List devices (of a resource group, or of the subscription).
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Generate an activation key: provisions the device's vault on first use, and waits.
    ActivationKey {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// The vault to create (3-24 characters; default: derived from the device name).
        #[arg(long)]
        vault_name: Option<String>,
    },
    /// Recover the device's vault: a soft-deleted one under its name; after a purge, a new
    /// vault (--new-vault-name). Puts back the lock, audit storage, diagnostic setting and the
    /// identity's access; the device then pushes its secrets (`strongbox agent sync-secrets`).
    RecoverVault {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// The new vault's name, when the old one was purged.
        #[arg(long)]
        new_vault_name: Option<String>,
    },
    /// Ask the device to push its secrets again (restores a deleted CIK, fixes stale values);
    /// waits until the device reports the sync done.
    SyncSecrets {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Send a customer secret to the device over the CIK channel: sealed under a key derived
    /// from the device's CIK and stored in its vault. The value comes from a file or stdin only.
    SendSecret {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        secret_name: String,
        /// Read the value from this file (`-` or absent: stdin). Any bytes: UTF-8 text travels
        /// as text, anything else as binary (application/octet-stream unless --content-type).
        #[arg(long, short = 'f')]
        file: Option<std::path::PathBuf>,
        /// Send the value as binary with this content type (e.g. application/x-pkcs12); the
        /// device writes back exactly the bytes sent.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Restore the device identity's Get and Set on its vault (the same repair as recover-vault).
    RecoverAccess {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a device and its identity. Asks for the name and whether its vault goes too,
    /// unless --delete-vault or --keep-vault says.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Also delete the device's vault (lock removed, vault soft-deleted).
        #[arg(long, conflicts_with = "keep_vault")]
        delete_vault: bool,
        /// Keep the device's vault, its secrets and its lock.
        #[arg(long)]
        keep_vault: bool,
    },
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Status", &|v| s(v, "/properties/dataBoxEdgeDeviceStatus")),
        col("Identity", &|v| s(v, "/identity/principalId")),
        col("IdentityStatus", &|v| s(v, "/properties/identityStatus")),
        col("Vault", &|v| s(v, "/properties/keyVault/name")),
        col("Location", &|v| s(v, "/location")),
    ]
}

pub async fn run(g: &Global, command: DeviceCommand) -> anyhow::Result<ExitCode> {
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    match command {
        DeviceCommand::Create {
            name,
            resource_group,
            location,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let r = c
                .json(&arm::device_create(&base, &group, &name, &location))
                .await?;
            output::one(g.output, &cols(), &r);
        }
        DeviceCommand::Show {
            name,
            resource_group,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let r = c.json(&arm::device_get(&base, &group, &name)).await?;
            output::one(g.output, &cols(), &r);
        }
        DeviceCommand::List { resource_group } => {
            let items = c
                .list_all(
                    &arm::device_list(&base, &sub, resource_group.as_deref()),
                    None,
                )
                .await?;
            output::items(g.output, &cols(), &items);
        }
        DeviceCommand::RecoverVault {
            name,
            resource_group,
            new_vault_name,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let call = arm::device_recover_vault(&base, &group, &name, new_vault_name.as_deref());
            let done = operation(&c, &base, &group, &name, &call).await?;
            let device = c.json(&arm::device_get(&base, &group, &name)).await?;
            match g.output {
                Format::Json => output::json(&done),
                _ => {
                    println!(
                        "Recovered the vault '{}' of device '{name}' (lock, audit storage, diagnostic setting and identity access in place). Run `strongbox agent sync-secrets` on the device to push its secrets there.",
                        s(&device, "/properties/keyVault/name")
                    );
                    if restored_identity(&done) {
                        println!(
                            "The device's identity was restored ({}); it holds no device key yet: generate a new activation key (strongbox device activation-key --name {name}) and activate the device with it.",
                            s(&device, "/identity/principalId")
                        );
                    }
                }
            }
        }
        DeviceCommand::SyncSecrets {
            name,
            resource_group,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            eprintln!(
                "Waiting for device '{name}' to push its secrets (its agent checks in on its poll interval)..."
            );
            let call = arm::device_sync_secrets(&base, &group, &name);
            let done = operation(&c, &base, &group, &name, &call).await?;
            if g.output == Format::Json {
                println!("{}", serde_json::to_string_pretty(&done["properties"])?);
            } else {
                let secrets: Vec<String> = done["properties"]["secrets"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| format!("{} ({})", s(x, "/name"), s(x, "/outcome")))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "Device '{name}' synced its secrets at {}: {}.",
                    s(&done, "/properties/completedAt"),
                    secrets.join(", ")
                );
            }
        }
        DeviceCommand::SendSecret {
            name,
            resource_group,
            secret_name,
            file,
            content_type,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let bytes = match file.as_deref() {
                Some(p) if p != std::path::Path::new("-") => {
                    std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?
                }
                _ => {
                    let mut b = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                    b
                }
            };
            let bytes = zeroize::Zeroizing::new(bytes);
            // Text stays text (readable by agents that predate binary values); anything else
            // travels as base64 with its content type and comes out byte for byte.
            let content_type = content_type.or_else(|| {
                std::str::from_utf8(&bytes)
                    .is_err()
                    .then(|| "application/octet-stream".to_string())
            });
            let value = zeroize::Zeroizing::new(match content_type {
                None => String::from_utf8_lossy(&bytes).into_owned(),
                Some(_) => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode(&*bytes)
                }
            });
            let r = c
                .json(&arm::device_send_secret(
                    &base,
                    &group,
                    &name,
                    &secret_name,
                    &value,
                    content_type.as_deref(),
                ))
                .await?;
            if g.output == Format::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let kind = match content_type.as_deref() {
                    Some(ct) => format!("{} bytes, {ct}", bytes.len()),
                    None => "text".to_string(),
                };
                println!(
                    "Sent '{secret_name}' ({kind}) to device '{name}' sealed under its CIK (vault {}, envelope version {}). On the device: strongbox agent receive --secret-name {secret_name} --out FILE",
                    s(&r, "/vaultName"),
                    s(&r, "/envelopeVersion")
                );
            }
        }
        DeviceCommand::RecoverAccess {
            name,
            resource_group,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let call = arm::device_recover_vault(&base, &group, &name, None);
            let done = operation(&c, &base, &group, &name, &call).await?;
            match g.output {
                Format::Json => output::json(&done),
                _ => {
                    println!(
                        "Restored the identity's Get and Set on the vault of device '{name}'."
                    );
                    if restored_identity(&done) {
                        println!(
                            "The device's identity was restored; generate a new activation key (strongbox device activation-key --name {name}) and activate the device with it."
                        );
                    }
                }
            }
        }
        DeviceCommand::ActivationKey {
            name,
            resource_group,
            vault_name,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let call = arm::device_generate_key(&base, &group, &name, vault_name.as_deref());
            let done = operation(&c, &base, &group, &name, &call).await?;
            match g.output {
                Format::Json => output::json(&done),
                _ => {
                    let key = s(&done, "/properties/activationKey");
                    if key.is_empty() {
                        anyhow::bail!("{}", s(&done, "/properties/message"));
                    }
                    eprintln!(
                        "Activation key for device '{name}' (vault '{}'); valid for 72 hours, once:",
                        s(&done, "/properties/vaultName")
                    );
                    println!("{key}");
                }
            }
        }
        DeviceCommand::Delete {
            name,
            resource_group,
            delete_vault,
            keep_vault,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let device = c.json(&arm::device_get(&base, &group, &name)).await?;
            let vault = s(&device, "/properties/keyVault/name");
            let delete_vault = if delete_vault || keep_vault {
                delete_vault
            } else {
                confirm(&name, &vault)?
            };
            let r = c
                .send(&arm::device_delete(&base, &group, &name, delete_vault))
                .await?;
            let body = r.1.unwrap_or(Value::Null);
            match g.output {
                Format::Json => output::json(&body),
                _ => {
                    if body["vaultDeleted"] == true {
                        println!(
                            "Deleted device '{name}', its identity and its vault '{vault}' (soft-deleted; recoverable for its retention period)."
                        );
                    } else if body["vaultKept"] == true {
                        println!(
                            "Deleted device '{name}' and its identity; its vault '{vault}' is kept with its secrets and lock."
                        );
                    } else {
                        println!("Deleted device '{name}' and its identity.");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a recovery re-created or re-enabled the device's identity.
fn restored_identity(op: &Value) -> bool {
    op["steps"]
        .as_array()
        .is_some_and(|st| st.iter().any(|x| x["name"] == "RestoreIdentity"))
}

/// Starts a device operation and follows it step by step to its end; a failure names its step.
async fn operation(
    c: &strongbox_client::Client,
    base: &str,
    group: &Group<'_>,
    name: &str,
    start: &strongbox_client::Call,
) -> anyhow::Result<Value> {
    let started = c.json(start).await?;
    let op_id = s(&started, "/id");
    let bar = progress();
    let done = loop {
        let op = c
            .json(&arm::device_operation(base, group, name, &op_id))
            .await?;
        show_steps(&bar, &op);
        match op["status"].as_str() {
            Some("InProgress") => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => break op,
        }
    };
    bar.finish_and_clear();
    if done["status"] != "Succeeded" {
        let failed = done["steps"]
            .as_array()
            .and_then(|st| st.iter().find(|x| x["status"] == "Failed"))
            .map(|x| s(x, "/name"))
            .unwrap_or_default();
        return Err(crate::exit::refused(
            409,
            &s(&done, "/error/code"),
            format!(
                "step {failed} failed: {} Steps done so far are kept; run the command again to finish.",
                s(&done, "/error/message")
            ),
        ));
    }
    // Non-blocking steps that failed: the operation succeeded, but something is left to do.
    for w in done["warnings"].as_array().into_iter().flatten() {
        eprintln!(
            "warning: step {} did not complete ({}: {}). The rest is done; fix the cause, then run `strongbox device recover-vault --name {name}` to complete it.",
            s(w, "/step"),
            s(w, "/code"),
            s(w, "/message")
        );
    }
    Ok(done)
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// List the alerts a device raises now, each with the command that fixes it.
    List {
        #[arg(long, short = 'd')]
        device: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

pub async fn alerts(g: &Global, command: AlertCommand) -> anyhow::Result<ExitCode> {
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    let AlertCommand::List {
        device,
        resource_group,
    } = command;
    let rg = context::resource_group(&resource_group, &c)?;
    let group = Group {
        subscription: &sub,
        resource_group: &rg,
    };
    let r = c.json(&arm::device_alerts(&base, &group, &device)).await?;
    let items = r["value"].as_array().cloned().unwrap_or_default();
    let cols = vec![
        col("Severity", &|v| s(v, "/properties/severity")),
        col("Alert", &|v| s(v, "/properties/alertType")),
        col("Title", &|v| s(v, "/properties/title")),
        col("Since", &|v| s(v, "/properties/appearedAtDateTime")),
        col("Occurrences", &|v| {
            v.pointer("/properties/errorDetails/occurrences")
                .map(|n| n.to_string())
                .unwrap_or_default()
        }),
        col("Fix", &|v| s(v, "/properties/recommendation")),
    ];
    output::items(g.output, &cols, &items);
    Ok(ExitCode::SUCCESS)
}

/// Asks for the device name typed back, then for an explicit yes or no about the vault.
fn confirm(name: &str, vault: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        Ok(lines
            .next()
            .transpose()?
            .unwrap_or_default()
            .trim()
            .to_string())
    };
    let typed = ask(&format!("Type the device name ('{name}') to delete it: "))?;
    if typed != name {
        return Err(crate::exit::usage(
            "The name typed does not match the device; nothing was deleted.",
        ));
    }
    if vault.is_empty() {
        return Ok(false);
    }
    let answer = ask(&format!(
        "Also delete its vault '{vault}' and every secret in it? Type 'yes' to delete it or 'no' to keep it: "
    ))?;
    match answer.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(crate::exit::usage(
            "Answer 'yes' or 'no' (or pass --delete-vault / --keep-vault); nothing was deleted.",
        )),
    }
}

fn progress() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(8);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn show_steps(bar: &ProgressBar, op: &Value) {
    let steps = op["steps"].as_array().cloned().unwrap_or_default();
    bar.set_length(steps.len() as u64);
    bar.set_position(steps.iter().filter(|x| x["status"] == "Done").count() as u64);
    if let Some(now) = steps
        .iter()
        .find(|x| x["status"] == "Running" || x["status"] == "Failed")
    {
        bar.set_message(s(now, "/name"));
    }
}
