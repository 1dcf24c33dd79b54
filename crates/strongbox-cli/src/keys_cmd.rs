//! `strongbox admin rotate-data-key | rekey`: key maintenance on the store, next to running
//! servers (see strongbox_server::keys for how they learn of a rotation).

use crate::admin_cmd::{StoreArgs, read_passphrase_file};
use clap::{ArgGroup, Args};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_crypto::RootKey;
use strongbox_domain::SystemClock;
use strongbox_server::keys;

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Add the key and return; the servers carry out the re-encryption in the background.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("new_root").required(true).args(["new_key_file", "new_passphrase_file"])))]
pub struct RekeyArgs {
    /// The current root: --key-file or --passphrase-file as the server takes them.
    #[command(flatten)]
    store: StoreArgs,
    /// Create this new key file (it must not exist) and seal the keyring under it.
    #[arg(long)]
    new_key_file: Option<PathBuf>,
    /// Seal the keyring under a root derived from the passphrase in this file (Argon2id).
    #[arg(long)]
    new_passphrase_file: Option<PathBuf>,
}

pub async fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let (store, keyring) = strongbox_server::open_context(&a.store.config()?).await?;
    let clock = SystemClock;
    if keys::pending(&*store, &keyring).await? {
        eprintln!(
            "resuming the pending rotation to data key {}",
            keyring.active_key_id()
        );
    } else {
        let id = keys::rotate(&*store, &keyring, &clock).await?;
        eprintln!("new writes are sealed under data key {id}");
    }
    if !a.no_wait {
        let bar = crate::transfer::progress(0, "re-encrypting");
        keys::reencrypt(
            &*store,
            &keyring,
            &clock,
            &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
            std::time::Duration::ZERO,
        )
        .await?;
        bar.finish_and_clear();
    }
    println!(
        "{}",
        serde_json::json!({"activeKeyId": keyring.active_key_id(), "keyIds": keyring.key_ids(),
            "pending": keys::pending(&*store, &keyring).await?})
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn rekey(a: RekeyArgs) -> anyhow::Result<ExitCode> {
    // Opening the store proves the current root.
    let config = a.store.config()?;
    let (store, keyring) = strongbox_server::open_context(&config).await?;
    let (root, salt, described) = match (&a.new_key_file, &a.new_passphrase_file) {
        (Some(path), _) => (RootKey::create_file(path)?, None, "key file"),
        (None, Some(path)) => {
            let pass = read_passphrase_file(path)?;
            let salt = strongbox_crypto::random_bytes::<16>().to_vec();
            let root = tokio::task::spawn_blocking({
                let salt = salt.clone();
                move || RootKey::from_passphrase(pass.expose_secret().as_bytes(), &salt)
            })
            .await??;
            (root, Some(salt), "passphrase")
        }
        (None, None) => anyhow::bail!("give --new-key-file or --new-passphrase-file"),
    };
    keys::rekey(
        &*store,
        &keyring,
        &SystemClock,
        &root,
        salt.as_deref(),
        described,
    )
    .await?;
    // The store now opens with the new root only.
    keys::open_keyring(&*store, &root).await?;
    eprintln!("the keyring is sealed under the new {described}; the old root no longer opens it");
    Ok(ExitCode::SUCCESS)
}
