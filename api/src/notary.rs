//! The registry's signing key and its signed checkpoints.
//!
//! The key is made once per data dir (`kyso init`, or the first `kyso serve`) and kept in
//! `registry.key` (mode 0600); its public half is in `registry.pub` and at `/v1/log/key`.
//! Checkpoints are signed every few seconds while the log grows, and on demand; each one is
//! stored, so an auditor can later ask for the checkpoint a receipt was checked against.

use event_store::checkpoint::{Checkpoint, CheckpointError, RegistryKey, VerifierKey};
use event_store::{EventStore, StoreError};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const KEY_FILE: &str = "registry.key";
pub const PUBLIC_KEY_FILE: &str = "registry.pub";
/// The origin line of checkpoints, unless `--log-origin` says otherwise. It names the log;
/// it is fixed when the key is made.
pub const DEFAULT_ORIGIN: &str = "kyso.example/registry";

#[derive(Debug, thiserror::Error)]
pub enum NotaryError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Key { path: String, source: CheckpointError },
}

pub struct Notary {
    store: Arc<EventStore>,
    key: RegistryKey,
    /// One signer at a time, so two callers asking at once store one checkpoint.
    signing: Mutex<()>,
}

/// Reads the data dir's key, or makes one (with `origin` as its name) if there is none.
pub fn load_or_create_key(data_dir: &Path, origin: &str) -> Result<RegistryKey, NotaryError> {
    let path = data_dir.join(KEY_FILE);
    let io = |source| NotaryError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return RegistryKey::parse(&text)
                .map_err(|source| NotaryError::Key { path: path.display().to_string(), source });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let key = RegistryKey::from_seed(origin, rand::random())
        .map_err(|source| NotaryError::Key { path: path.display().to_string(), source })?;
    // create_new: two processes racing to make a key cannot overwrite each other's.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    file.write_all(format!("{}\n", key.to_text()).as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    let public = data_dir.join(PUBLIC_KEY_FILE);
    std::fs::write(&public, format!("{}\n", key.verifier()))
        .map_err(|source| NotaryError::Io { path: public.display().to_string(), source })?;
    Ok(key)
}

impl Notary {
    pub fn new(store: Arc<EventStore>, key: RegistryKey) -> Self {
        Self { store, key, signing: Mutex::new(()) }
    }

    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// A signed checkpoint of the tree as it is now: the newest
    /// stored one if it is current, else a new one, stored before it is returned.
    pub fn checkpoint_now(&self) -> Result<(u64, String), StoreError> {
        let _one_at_a_time = self.signing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let head = self.store.tree_head();
        if let Some((size, note)) = self.store.latest_checkpoint()?
            && size == head.size
        {
            return Ok((size, note));
        }
        let note = self.key.sign(&Checkpoint { origin: self.key.name(), size: head.size, root: head.root });
        self.store.put_checkpoint(head.size, &note)?;
        Ok((head.size, note))
    }

    /// Signs a checkpoint every `every` while the log grows, until the task is dropped.
    pub async fn run(self: Arc<Self>, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let notary = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || notary.checkpoint_now()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("signing a checkpoint: {e}"),
                Err(e) => tracing::error!("the checkpoint signer panicked: {e}"),
            }
        }
    }
}
