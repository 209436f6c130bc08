//! Encryption at rest of integration secrets, and the masks API roles see instead.
//!
//! Secrets are sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): a random
//! 192-bit nonce per seal, so nonces never repeat in practice without any counter to keep.
//! The associated data binds a ciphertext to its row id, user, type and key version: a
//! ciphertext copied into another row, or relabelled with another key version, fails to open.
//!
//! Keys come from the setting `dana.secret_keys`, a comma-separated list of
//! `version:base64(32 bytes)`. The highest version seals; every listed version opens, so keys
//! are rotated by adding a new version, running `dana.rotate_integration_secrets()`, and only
//! then removing the old one. The setting is superuser-only (`GUC_SUPERUSER_ONLY`, `SUSET`):
//! API roles can neither read nor change it, yet this code reads it in any role's session.

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Format byte in front of every ciphertext, so the layout can change later.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

pub static SECRET_KEYS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ALLOWED_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Registers `dana.secret_keys`. Called from `_PG_init`.
pub fn define_settings() {
    GucRegistry::define_string_guc(
        c"dana.secret_keys",
        c"Keys that encrypt integration secrets: comma-separated version:base64(32 bytes).",
        c"The highest version encrypts; all listed versions decrypt. Superuser-only.",
        &SECRET_KEYS,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"dana.integration_allowed_hosts",
        c"Private hosts integration configs may name: comma-separated names, addresses or CIDR blocks.",
        c"Loopback, private and link-local hosts are refused unless listed here. Superuser-only.",
        &ALLOWED_HOSTS,
        GucContext::Suset,
        GucFlags::empty(),
    );
}

/// The operator's exceptions to the public-hosts rule (`dana.integration_allowed_hosts`).
pub fn allowed_hosts() -> dana_egress::HostPolicy {
    ALLOWED_HOSTS
        .get()
        .map(|raw| dana_egress::HostPolicy::parse(&raw.to_string_lossy()))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("dana.secret_keys is not set: an administrator must configure an encryption key before integration secrets can be stored")]
    NoKeys,
    #[error("dana.secret_keys is malformed: {0}")]
    MalformedKeys(String),
    #[error("encryption key version {0} is not in dana.secret_keys")]
    UnknownKeyVersion(i32),
    #[error("integration secrets could not be decrypted (wrong key, or the ciphertext does not belong to this row)")]
    Undecryptable,
}

/// The parsed key list.
pub struct Keyring {
    keys: Vec<(i32, [u8; 32])>,
}

impl Keyring {
    /// The keyring configured in `dana.secret_keys`.
    pub fn from_settings() -> Result<Keyring, SecretError> {
        let raw = SECRET_KEYS.get().ok_or(SecretError::NoKeys)?;
        Keyring::parse(&raw.to_string_lossy())
    }

    pub fn parse(text: &str) -> Result<Keyring, SecretError> {
        let mut keys = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad =
                |why: &str| SecretError::MalformedKeys(format!("entry {}: {why}", keys.len() + 1));
            let (version, key) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected version:base64key"))?;
            let version: i32 = version
                .trim()
                .parse()
                .map_err(|_| bad("version is not an integer"))?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| bad("key is not base64"))?;
            let key: [u8; 32] = key.try_into().map_err(|_| bad("key must be 32 bytes"))?;
            if keys.iter().any(|(v, _)| *v == version) {
                return Err(bad("version listed twice"));
            }
            keys.push((version, key));
        }
        if keys.is_empty() {
            return Err(SecretError::NoKeys);
        }
        Ok(Keyring { keys })
    }

    /// The version new ciphertexts are sealed with: the highest.
    pub fn current_version(&self) -> i32 {
        self.keys
            .iter()
            .map(|(v, _)| *v)
            .max()
            .expect("keyring is never empty")
    }

    fn key(&self, version: i32) -> Result<&[u8; 32], SecretError> {
        self.keys
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, k)| k)
            .ok_or(SecretError::UnknownKeyVersion(version))
    }

    /// Seals `plaintext` with the current key; returns the key version and the ciphertext.
    pub fn seal(&self, plaintext: &[u8], binding: &Binding) -> (i32, Vec<u8>) {
        let version = self.current_version();
        let cipher = XChaCha20Poly1305::new(self.key(version).expect("current key exists").into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = binding.associated_data(version);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        (version, out)
    }

    /// Opens a ciphertext sealed by [`Keyring::seal`] for the same binding and version.
    pub fn open(
        &self,
        version: i32,
        sealed: &[u8],
        binding: &Binding,
    ) -> Result<Vec<u8>, SecretError> {
        let key = self.key(version)?;
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT_V1 {
            return Err(SecretError::Undecryptable);
        }
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        let aad = binding.associated_data(version);
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Undecryptable)
    }
}

/// What a ciphertext is bound to.
pub struct Binding<'a> {
    pub row_id: &'a str,
    pub user_id: &'a str,
    pub integration_type: &'a str,
}

impl Binding<'_> {
    fn associated_data(&self, version: i32) -> Vec<u8> {
        format!(
            "dana.integration_configs\0{}\0{}\0{}\0{}",
            self.row_id, self.user_id, self.integration_type, version
        )
        .into_bytes()
    }
}

/// What API roles see in place of a secret. A secret is never shown beyond a prefix everyone
/// knows (`xoxb-`, the field's documented prefix) and, for long random tokens only (24
/// characters or more), the last four characters: enough to tell two tokens apart, a sixth of the
/// token at most. Passwords and short secrets show nothing. Every mask contains `…`, so a mask
/// sent back is recognised and never stored as a secret.
pub fn mask(secret: &str, known_prefix: Option<&str>, tail_allowed: bool) -> String {
    let prefix = known_prefix.filter(|p| secret.starts_with(p)).unwrap_or("");
    let chars: Vec<char> = secret.chars().collect();
    let tail: String = if tail_allowed && chars.len() >= 24 {
        chars[chars.len() - 4..].iter().collect()
    } else {
        String::new()
    };
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod unit {
    use super::*;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }
    const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

    fn binding(row: &str) -> Binding<'_> {
        Binding {
            row_id: row,
            user_id: "u",
            integration_type: "slack",
        }
    }

    #[test]
    fn seal_open_round_trip_with_highest_version() {
        let keys = ring(&format!("1:{K1}, 2:{K2}"));
        let (version, sealed) = keys.seal(b"xoxb-secret", &binding("r1"));
        assert_eq!(version, 2);
        assert!(!sealed.windows(11).any(|w| w == b"xoxb-secret"));
        assert_eq!(
            keys.open(version, &sealed, &binding("r1")).unwrap(),
            b"xoxb-secret"
        );
    }

    #[test]
    fn ciphertext_is_bound_to_row_and_version() {
        let keys = ring(&format!("1:{K1},2:{K2}"));
        let (version, sealed) = keys.seal(b"s", &binding("r1"));
        assert_eq!(
            keys.open(version, &sealed, &binding("r2")),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            keys.open(1, &sealed, &binding("r1")),
            Err(SecretError::Undecryptable)
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            keys.open(version, &tampered, &binding("r1")),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            keys.open(7, &sealed, &binding("r1")),
            Err(SecretError::UnknownKeyVersion(7))
        );
    }

    #[test]
    fn malformed_keyrings_are_explained() {
        for bad in ["1", "x:abc", &format!("1:{K1},1:{K2}"), "1:AAAA", "1:!!"] {
            assert!(
                matches!(Keyring::parse(bad), Err(SecretError::MalformedKeys(_))),
                "{bad}"
            );
        }
        assert!(matches!(Keyring::parse(" , "), Err(SecretError::NoKeys)));
    }

    #[test]
    fn masks_reveal_little() {
        assert_eq!(
            mask("xoxb-1234567890-abcd1a2b", Some("xoxb-"), true),
            "xoxb-…1a2b"
        );
        // A short token shows its known prefix only; a password nothing at all.
        assert_eq!(mask("xoxb-123456", Some("xoxb-"), true), "xoxb-…");
        assert_eq!(mask("abcde_fghijk", None, true), "…");
        assert_eq!(mask("a-very-long-password-of-30-chars", None, false), "…");
        // A prefix is shown only when it is the field's documented one.
        assert_eq!(
            mask("sk_live_abcdefghijklmnopqrstuvwx", None, true),
            "…uvwx"
        );
        assert_eq!(mask("hunter2", Some("xoxb-"), true), "…");
    }
}
