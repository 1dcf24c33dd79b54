//! `strongbox storage …`: storage accounts, Strongbox's audit file destinations. Each is a
//! directory on the server, inside its storage root (`server --storage-root`, default
//! `{data dir}/storage`); `--dir` picks one there (relative to the root, or absolute inside it).

use crate::context::{self, Global};
use crate::output::{self, Col, col, s};
use clap::Subcommand;
use std::process::ExitCode;
use strongbox_client::arm::{self, Group, StorageOptions};

#[derive(Subcommand)]
pub enum StorageCommand {
    /// Create (or update) a storage account.
    Create {
        /// 3-24 lowercase letters and digits.
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
        /// Directory on the server (default: {storage root}/{name}); fixed once created.
        #[arg(long)]
        dir: Option<String>,
        /// Close a file and start the next past this size (default 8 MiB).
        #[arg(long)]
        max_file_bytes: Option<i64>,
        /// … or once it is this many seconds old (default 3600).
        #[arg(long)]
        max_file_age: Option<i64>,
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
    },
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a storage account (refused while diagnostic settings use it; files stay).
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Location", &|v| s(v, "/location")),
        col("Directory", &|v| s(v, "/properties/localPath")),
        col("MaxFileBytes", &|v| s(v, "/properties/maxFileBytes")),
        col("MaxFileAgeSeconds", &|v| {
            s(v, "/properties/maxFileAgeSeconds")
        }),
    ]
}

pub async fn run(g: &Global, command: StorageCommand) -> anyhow::Result<ExitCode> {
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    match command {
        StorageCommand::Create {
            name,
            resource_group,
            location,
            dir,
            max_file_bytes,
            max_file_age,
            tags,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let o = StorageOptions {
                location,
                local_path: dir,
                max_file_bytes,
                max_file_age_secs: max_file_age,
                tags: context::tags(&tags)?,
            };
            let r = c
                .json(&arm::storage_create(&base, &group, &name, &o))
                .await?;
            output::one(g.output, &cols(), &r);
        }
        StorageCommand::Show {
            name,
            resource_group,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let r = c.json(&arm::storage_get(&base, &group, &name)).await?;
            output::one(g.output, &cols(), &r);
        }
        StorageCommand::List { resource_group } => {
            let items = c
                .list_all(
                    &arm::storage_list(&base, &sub, resource_group.as_deref()),
                    None,
                )
                .await?;
            output::items(g.output, &cols(), &items);
        }
        StorageCommand::Delete {
            name,
            resource_group,
        } => {
            let rg = context::resource_group(&resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            c.send(&arm::storage_delete(&base, &group, &name)).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
