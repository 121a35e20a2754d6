//! The node's identity: an Ed25519 key pair kept in the data directory.
//!
//! The file `node.key` holds the 32-byte private seed, created on first
//! start with mode 0600. The public key is the node's [`NodeId`]; the TLS
//! handshake proves possession of the private key (see [`crate::tls`]).

use std::{
    fs::OpenOptions,
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use p2pfs_proto::NodeId;
use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{Ed25519KeyPair, KeyPair},
};

use crate::error::{SetupError, SwarmError};

/// A node's secret key.
pub struct SecretKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public().fmt_short())
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SwarmError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| SetupError::Random)?;
        Self::from_seed(seed)
    }

    /// The key with this 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, SwarmError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| SetupError::BadSeed)?;
        Ok(Self { seed, pair })
    }

    /// Loads the key at `path`, creating it (mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, SwarmError> {
        let err = |reason: String| SwarmError::Identity {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let mode = f
                    .metadata()
                    .map_err(|e| err(e.to_string()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        "node key {} is readable by others (mode {:o}); it should be 0600",
                        path.display(),
                        mode & 0o777
                    );
                }
                let mut seed = [0u8; 32];
                let mut extra = [0u8; 1];
                f.read_exact(&mut seed).map_err(|e| {
                    err(format!(
                        "unreadable ({e}); move it away to make a new identity"
                    ))
                })?;
                if f.read(&mut extra).map_err(|e| err(e.to_string()))? != 0 {
                    return Err(err("longer than 32 bytes: not a p2pfs node key".into()));
                }
                Self::from_seed(seed)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|e| err(e.to_string()))?;
                }
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| err(e.to_string()))?;
                f.write_all(&key.seed).map_err(|e| err(e.to_string()))?;
                f.sync_all().map_err(|e| err(e.to_string()))?;
                Ok(key)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The node id: the public key.
    pub fn public(&self) -> NodeId {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        NodeId::from_bytes(out)
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }

    /// The 32-byte seed (the Mainline DHT signs this node's address
    /// record with the same key, [`crate::mainline`]; rooms' key wraps
    /// derive the X25519 key from it).
    pub(crate) fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The keys QUIC's connection ids and stateless reset tokens are made
    /// with, derived from the seed (HMAC-SHA256 of fixed labels under it:
    /// nothing about the seed can be learnt from them), so the same on
    /// every run of the node. A node that restarts has lost its
    /// connections; the first packet a peer sends on one of them carries a
    /// connection id the new run recognises as its own, and is answered
    /// with a stateless reset whose token the peer checks (it was made with
    /// the same key): the peer learns at once that the connection is gone
    /// instead of waiting for it to time out (RFC 9000 §10.3, which asks
    /// for such a key to survive the loss of state).
    pub(crate) fn quic_keys(&self) -> QuicKeys {
        let prf = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.seed);
        let reset = ring::hmac::sign(&prf, b"p2pfs QUIC stateless reset key v1");
        let cid = ring::hmac::sign(&prf, b"p2pfs QUIC connection id key v1");
        let mut keys = QuicKeys {
            reset: [0; 32],
            cid: 0,
        };
        keys.reset.copy_from_slice(reset.as_ref());
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&cid.as_ref()[..8]);
        keys.cid = u64::from_le_bytes(cid_key);
        keys
    }

    /// The key as PKCS#8 v1 DER (RFC 8410), for TLS.
    pub(crate) fn pkcs8_der(&self) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&self.seed);
        der
    }
}

/// See [`SecretKey::quic_keys`].
pub(crate) struct QuicKeys {
    /// The HMAC key of stateless reset tokens.
    pub(crate) reset: [u8; 32],
    /// The key that marks connection ids as this node's.
    pub(crate) cid: u64,
}

/// Checks an Ed25519 signature by `node` over `msg`.
pub fn verify(node: &NodeId, msg: &[u8], sig: &[u8; 64]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, node.as_bytes())
        .verify(msg, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_keys_are_the_same_on_every_run_and_differ_between_nodes() {
        let a = SecretKey::from_seed([7; 32]).unwrap().quic_keys();
        let again = SecretKey::from_seed([7; 32]).unwrap().quic_keys();
        let b = SecretKey::from_seed([8; 32]).unwrap().quic_keys();
        assert_eq!((a.reset, a.cid), (again.reset, again.cid));
        assert_ne!(a.reset, b.reset);
        assert_ne!(a.cid, b.cid);
        assert_ne!(&a.reset[..], &[7u8; 32][..], "not the seed itself");
    }

    #[test]
    fn created_once_with_mode_0600_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let a = SecretKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        std::fs::write(&path, b"short").unwrap();
        assert!(SecretKey::load_or_create(&path).is_err());
    }

    #[test]
    fn signatures_verify_only_for_the_signer() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        let sig = a.sign(b"hello");
        assert!(verify(&a.public(), b"hello", &sig));
        assert!(!verify(&b.public(), b"hello", &sig));
        assert!(!verify(&a.public(), b"hellO", &sig));
    }
}
