//! `segment-connections keys generate|rotate`: the write-key encryption keys. `rotate` works on
//! the store directly (not through a server), beside running replicas.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::app;
use crate::config::{self, KeySource};
use crate::store::{KeyRing, Store as _};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Print a new random key (64 hex digits), for the first line of a key file.
    Generate,
    /// Re-encrypt every stored write key under the current key (the first line of the key file),
    /// so older keys can then be dropped from it. Give the same --store and key as `serve`,
    /// with the new key first and the older ones after it.
    Rotate(config::StoreArgs),
}

/// Exit 0 done, 1 failed (store unreachable, a write key that no given key opens), 2 usage.
pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate => match KeyRing::generate_hex() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        KeysCommand::Rotate(args) => {
            let (location, key) = match args.resolve() {
                Ok(found) => found,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            // Never create a key here: rotating needs the keys in use.
            let key = match key {
                KeySource::CreateIfMissing(path) => KeySource::File(path),
                given => given,
            };
            match rotate(&location, &key) {
                Ok((count, key_id)) => {
                    println!("re-encrypted {count} write key(s) under key {key_id}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn rotate(location: &config::StoreLocation, key: &KeySource) -> anyhow::Result<(u64, String)> {
    let keys = app::load_keys(key)?;
    let key_id = keys.current_key_id().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = app::open_store(location, keys).await?;
        let count = store
            .reencrypt_write_keys()
            .await
            .context("re-encrypting the write keys")?;
        store.close().await;
        Ok((count, key_id))
    })
}
