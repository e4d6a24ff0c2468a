//! Bearer tokens mapped to roles. Only SHA-256 hashes of tokens are stored, in
//! `<data dir>/tokens.json`, which `kyso token create` appends to and the server re-reads
//! when it meets a token it does not know (so a new token works without a restart).

use commands::domain::CaId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The Sở: the referee.
    Admin,
    Auditor,
    /// A CA's service: acts only as this CA (R19).
    Ca(CaId),
    /// The citizen portal.
    Portal,
    Reporter,
}

#[derive(Debug, thiserror::Error)]
#[error("role {0:?} is not one of admin, auditor, portal, reporter, ca:<CA-ID>")]
pub struct BadRole(String);

impl std::str::FromStr for Role {
    type Err = BadRole;
    fn from_str(s: &str) -> Result<Self, BadRole> {
        Ok(match s {
            "admin" => Role::Admin,
            "auditor" => Role::Auditor,
            "portal" => Role::Portal,
            "reporter" => Role::Reporter,
            _ => match s.strip_prefix("ca:").map(CaId::parse) {
                Some(Ok(ca)) => Role::Ca(ca),
                _ => return Err(BadRole(s.to_string())),
            },
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Auditor => f.write_str("auditor"),
            Role::Portal => f.write_str("portal"),
            Role::Reporter => f.write_str("reporter"),
            Role::Ca(ca) => write!(f, "ca:{ca}"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// Hex SHA-256 of the token.
    hash: String,
    role: String,
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (printed once, never stored).
pub fn new_token() -> String {
    format!("kyso_{}", hex::encode(rand::random::<[u8; 24]>()))
}

pub fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tokens.json")
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a token list: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

fn read_entries(path: &Path) -> Result<Vec<Entry>, TokenFileError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| TokenFileError::Parse { path: path.into(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(TokenFileError::Io { path: path.into(), source }),
    }
}

/// Creates a token for `role`, stores its hash and returns the token.
pub fn create(data_dir: &Path, role: &Role) -> Result<String, TokenFileError> {
    let path = tokens_path(data_dir);
    let mut entries = read_entries(&path)?;
    let token = new_token();
    entries.push(Entry { hash: hex::encode(hash(&token)), role: role.to_string() });
    let io = |source| TokenFileError::Io { path: path.clone(), source };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    // Write aside then rename: a crash never leaves a half-written list.
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(&entries).expect("a token list serialises")).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(token)
}

/// The server's view of the token file.
pub struct Tokens {
    path: PathBuf,
    known: RwLock<(Roles, Option<Version>)>,
}

/// Token hash → role.
type Roles = HashMap<[u8; 32], Role>;

/// Which version of the token file was read: `kyso token create` replaces the file, so a
/// new token shows as a new inode (or size, or mtime). An unknown token costs one `stat`
/// and re-reads the file only when it changed, so guessing cannot make the server read its
/// disk in a loop, and a new token works at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn version(path: &Path) -> Option<Version> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Version { inode: m.ino(), len: m.len(), modified: m.modified().ok() })
}

impl Tokens {
    pub fn load(data_dir: &Path) -> Result<Self, TokenFileError> {
        let path = tokens_path(data_dir);
        let seen = version(&path);
        let known = Self::parse(&path)?;
        Ok(Self { path, known: RwLock::new((known, seen)) })
    }

    /// A fixed set, for tests.
    pub fn fixed(tokens: &[(&str, Role)]) -> Self {
        let known = tokens.iter().map(|(t, r)| (hash(t), r.clone())).collect();
        Self { path: PathBuf::new(), known: RwLock::new((known, None)) }
    }

    fn parse(path: &Path) -> Result<Roles, TokenFileError> {
        let mut out = HashMap::new();
        for e in read_entries(path)? {
            let (Ok(h), Ok(role)) = (hex::decode(&e.hash), e.role.parse::<Role>()) else {
                tracing::warn!(role = e.role, "ignoring a malformed entry in the token file");
                continue;
            };
            if let Ok(h) = <[u8; 32]>::try_from(h) {
                out.insert(h, role);
            }
        }
        Ok(out)
    }

    pub fn role(&self, token: &str) -> Option<Role> {
        let h = hash(token);
        {
            let known = self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(r) = known.0.get(&h) {
                return Some(r.clone());
            }
            if self.path.as_os_str().is_empty() || version(&self.path) == known.1 {
                return None;
            }
        }
        let mut known = self.known.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = version(&self.path);
        if now != known.1 {
            match Self::parse(&self.path) {
                Ok(fresh) => *known = (fresh, now),
                Err(e) => tracing::warn!("cannot re-read tokens: {e}"),
            }
        }
        known.0.get(&h).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_created_while_serving_works_at_once_and_a_guess_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let first = create(dir.path(), &Role::Admin).unwrap();
        let tokens = Tokens::load(dir.path()).unwrap();
        assert_eq!(tokens.role(&first), Some(Role::Admin));
        assert_eq!(tokens.role("guess"), None);
        for _ in 0..3 {
            let ca: Role = "ca:VNPT-CA".parse().unwrap();
            let fresh = create(dir.path(), &ca).unwrap();
            assert_eq!(tokens.role(&fresh), Some(ca));
        }
        assert_eq!(tokens.role("guess"), None);
        assert_eq!(tokens.role(&first), Some(Role::Admin));
    }
}
