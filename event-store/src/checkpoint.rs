//! Signed tree heads ("checkpoints") in the C2SP formats, so tools written for Go's
//! `golang.org/x/mod/sumdb/note` or Sigsum/Tessera witnesses can read them:
//!
//! - body (`tlog-checkpoint`): origin line, tree size in decimal, root hash in base64, each
//!   ending in `\n`;
//! - signed note (`signed-note`): the body, one empty line, then signature lines
//!   `— <key name> <base64(key id (4 bytes) ‖ Ed25519 signature (64 bytes))>`;
//! - verifier key: `<name>+<key id hex>+<base64(0x01 ‖ public key)>`, the key id being the
//!   first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`.
//!
//! Pure: no storage, no clock. The server signs; anyone with the verifier key checks.

use crate::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The algorithm byte C2SP assigns to Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key or a checkpoint was refused. Each says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("bad checkpoint text: {0}")]
    Malformed(String),
    #[error("the checkpoint carries no signature by key {0}")]
    NoSignature(String),
    #[error("the signature by key {0} does not match the checkpoint: it was altered or signed by another key")]
    BadSignature(String),
}

/// What a checkpoint states: the log `origin` had `size` events with Merkle root `root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub origin: &'a str,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint<'_> {
    /// The text that is signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }
}

/// A checkpoint read back from its text, owning its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn check_name(name: &str) -> Result<(), CheckpointError> {
    // signed-note: a key name is non-empty and has no spaces or plus signs.
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(CheckpointError::BadKey(format!("key name {name:?} must be non-empty, without spaces or '+'")));
    }
    Ok(())
}

/// The registry's signing key. Its text form is Go's `note` signer key format
/// (`PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>`).
pub struct RegistryKey {
    name: String,
    key: SigningKey,
}

impl RegistryKey {
    /// A key from 32 random bytes (the caller brings the randomness: this module reads no
    /// entropy, so it stays deterministic under test).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CheckpointError> {
        check_name(name)?;
        Ok(Self { name: name.to_string(), key: SigningKey::from_bytes(&seed) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// The key as stored in the data dir.
    pub fn to_text(&self) -> String {
        let id = key_id(&self.name, &self.key.verifying_key());
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex::encode(id), B64.encode(raw))
    }

    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| CheckpointError::BadKey("a signing key starts with PRIVATE+KEY+".into()))?;
        let (name, id, raw) = split_key(rest)?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, seed)) => {
                seed.try_into().map_err(|_| CheckpointError::BadKey("an Ed25519 seed is 32 bytes".into()))?
            }
            _ => return Err(CheckpointError::BadKey("not an Ed25519 key (algorithm byte 0x01)".into())),
        };
        let key = Self::from_seed(name, seed)?;
        if key_id(name, &key.key.verifying_key()) != id {
            return Err(CheckpointError::BadKey("the key id does not match the key".into()));
        }
        Ok(key)
    }

    /// The signed note for `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint<'_>) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut sig = key_id(&self.name, &self.key.verifying_key()).to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(sig))
    }
}

fn split_key(text: &str) -> Result<(&str, [u8; 4], Vec<u8>), CheckpointError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(raw)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::BadKey("expected <name>+<key id hex>+<base64 key>".into()));
    };
    check_name(name)?;
    let id: [u8; 4] = hex::decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CheckpointError::BadKey("the key id is 8 hex digits".into()))?;
    let raw = B64.decode(raw).map_err(|e| CheckpointError::BadKey(format!("the key is not base64: {e}")))?;
    Ok((name, id, raw))
}

/// The public half: what auditors, CAs and witnesses hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: VerifyingKey,
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex::encode(key_id(&self.name, &self.key)), B64.encode(raw))
    }
}

impl VerifierKey {
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let (name, id, raw) = split_key(text.trim())?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, public)) => {
                public.try_into().map_err(|_| CheckpointError::BadKey("an Ed25519 public key is 32 bytes".into()))?
            }
            _ => return Err(CheckpointError::BadKey("not an Ed25519 key (algorithm byte 0x01)".into())),
        };
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| CheckpointError::BadKey(format!("not a valid Ed25519 public key: {e}")))?;
        if key_id(name, &key) != id {
            return Err(CheckpointError::BadKey("the key id does not match the key".into()));
        }
        Ok(Self { name: name.to_string(), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks this key's signature on the checkpoint `note` and returns what it states.
    /// Signatures by other keys (a witness's cosignature, say) are ignored.
    pub fn open(&self, note: &str) -> Result<OpenedCheckpoint, CheckpointError> {
        parse_body(&self.verify_note(note)?)
    }

    /// Checks this key's signature on any signed note and returns the signed text.
    pub fn verify_note(&self, note: &str) -> Result<String, CheckpointError> {
        let (body, signatures) = note
            .split_once("\n\n")
            .ok_or_else(|| CheckpointError::Malformed("no empty line between the text and its signatures".into()))?;
        let body = format!("{body}\n");
        let id = key_id(&self.name, &self.key);
        let mut found = false;
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                return Err(CheckpointError::Malformed(format!("{line:?} is not a signature line")));
            };
            let Some((name, sig)) = rest.split_once(' ') else {
                return Err(CheckpointError::Malformed(format!("{line:?} is not a signature line")));
            };
            let Ok(sig) = B64.decode(sig) else { continue };
            if name != self.name || sig.len() != 68 || sig[..4] != id {
                continue;
            }
            found = true;
            let signature =
                Signature::from_slice(&sig[4..]).map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            self.key
                .verify(body.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
        }
        if !found {
            return Err(CheckpointError::NoSignature(self.name.clone()));
        }
        Ok(body)
    }
}

/// What a checkpoint note states, *without* checking any signature: for comparing a note
/// already verified elsewhere (or one under suspicion) against a log.
pub fn read_unsigned(note: &str) -> Result<OpenedCheckpoint, CheckpointError> {
    parse_body(note)
}

fn parse_body(body: &str) -> Result<OpenedCheckpoint, CheckpointError> {
    let mut lines = body.lines();
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(CheckpointError::Malformed("a checkpoint has an origin, a size and a root line".into()));
    };
    let size = size.parse().map_err(|_| CheckpointError::Malformed(format!("tree size {size:?} is not a number")))?;
    let root: Hash = B64
        .decode(root)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CheckpointError::Malformed("the root is not 32 bytes of base64".into()))?;
    Ok(OpenedCheckpoint { origin: origin.to_string(), size, root })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RegistryKey {
        RegistryKey::from_seed("kyso.example/test", [7; 32]).unwrap()
    }

    #[test]
    fn signs_and_opens() {
        let key = key();
        let cp = Checkpoint { origin: "kyso.example/test", size: 42, root: [9; 32] };
        let note = key.sign(&cp);
        assert!(note.starts_with("kyso.example/test\n42\nCQkJ"));
        let opened = key.verifier().open(&note).unwrap();
        assert_eq!((opened.origin.as_str(), opened.size, opened.root), ("kyso.example/test", 42, [9; 32]));
    }

    #[test]
    fn refuses_an_altered_note_and_a_foreign_key() {
        let key = key();
        let note = key.sign(&Checkpoint { origin: "kyso.example/test", size: 42, root: [9; 32] });
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(key.verifier().open(&altered), Err(CheckpointError::BadSignature(_))));
        let other = RegistryKey::from_seed("kyso.example/test", [8; 32]).unwrap();
        assert!(matches!(other.verifier().open(&note), Err(CheckpointError::NoSignature(_))));
    }

    /// The example key and note from the documentation of Go's `golang.org/x/mod/sumdb/note`:
    /// our reading of the format matches the reference implementation's.
    #[test]
    fn reads_the_go_note_example() {
        let signer =
            RegistryKey::parse("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
                .unwrap();
        let vkey = VerifierKey::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
        assert_eq!(signer.verifier(), vkey);
        let text =
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let note = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        assert_eq!(vkey.verify_note(&note).unwrap(), text);
    }

    #[test]
    fn keys_round_trip_through_text() {
        let key = key();
        let again = RegistryKey::parse(&key.to_text()).unwrap();
        assert_eq!(again.verifier(), key.verifier());
        let vkey = key.verifier().to_string();
        assert_eq!(VerifierKey::parse(&vkey).unwrap(), key.verifier());
        // One changed character of the key id is caught.
        let bad = vkey.replacen('+', "+0", 1);
        assert!(VerifierKey::parse(&bad).is_err());
    }
}
