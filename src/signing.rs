//! Authenticated backups: an Ed25519 key signs each manifest, and so, through the manifest's
//! SHA-256 of the data object, the backup's bytes.
//!
//! A checksum proves that bytes match a manifest; it says nothing of who wrote both, since
//! anyone who can write the bucket can write a matching pair. A signature by a key the fleet
//! trusts does: hosts that back up hold the secret key (a file or an environment variable,
//! never the bucket), hosts that restore need only the public keys. Only an authenticated
//! backup may be restored with more rights, and only when asked.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestSignature};

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";
/// Signed messages start with this, so a manifest signature can never be taken for anything
/// else the key might sign.
const CONTEXT: &str = "lifeboat manifest sha256 ";

/// `[signing]` in lifeboat.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// A file holding this host's secret key (`lifeboat keygen` writes one); new backups are
    /// signed with it.
    pub key_file: Option<PathBuf>,
    /// The environment variable holding the secret key, instead of a file.
    pub key_env: Option<String>,
    /// Public keys (`ed25519:...`) whose signatures make a backup authenticated; the key this
    /// host signs with is trusted as well.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

impl SigningConfig {
    /// Checked when the config is loaded.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.key_file.is_some() && self.key_env.is_some() {
            return Err("signing: set either `key_file` or `key_env`, not both".into());
        }
        if self.key_env.as_deref() == Some("") {
            return Err("signing.key_env is empty".into());
        }
        for k in &self.trusted_keys {
            k.parse::<PublicKey>()
                .map_err(|e| format!("signing.trusted_keys: {e}"))?;
        }
        Ok(())
    }

    fn signs(&self) -> bool {
        self.key_file.is_some() || self.key_env.is_some()
    }
}

/// A public key, written `ed25519:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_PREFIX}{}",
            crate::pipeline::hex(self.0.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?} is not a public key (ed25519: and 64 hex digits)");
        let bytes = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(unhex::<32>)
            .ok_or_else(bad)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad())
    }
}

/// The secret key new manifests are signed with.
pub struct Signer {
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("Signer")
            .field("public", &self.public())
            .finish()
    }
}

impl Signer {
    /// The signer a config asks for; `None` when this host does not sign.
    pub fn from_config(cfg: Option<&SigningConfig>) -> Result<Option<Signer>> {
        let Some(cfg) = cfg.filter(|c| c.signs()) else {
            return Ok(None);
        };
        let (text, from) = match (&cfg.key_file, &cfg.key_env) {
            (Some(path), _) => (
                std::fs::read_to_string(path).map_err(|e| {
                    Error::Invalid(format!(
                        "cannot read the signing key {} (signing.key_file): {e}",
                        path.display()
                    ))
                })?,
                format!("the file {}", path.display()),
            ),
            (None, Some(var)) => (
                std::env::var(var).map_err(|_| {
                    Error::Invalid(format!(
                        "to sign backups the environment variable {var} (signing.key_env) must hold the secret key; it is not set"
                    ))
                })?,
                format!("the variable {var}"),
            ),
            (None, None) => return Ok(None),
        };
        Signer::parse(&text).map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "{from} does not hold a lifeboat signing key (ed25519-secret: and 64 hex digits; `lifeboat keygen` writes one)"
            ))
        })
    }

    /// A new random key and the text of its secret, to be kept in a file.
    pub fn generate() -> Result<(Signer, String)> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Invalid(format!("no randomness for a new key: {e}")))?;
        let signer = Signer {
            key: SigningKey::from_bytes(&seed),
        };
        let text = format!(
            "# lifeboat signing key (secret: keep it off the bucket); public key {}\n{SECRET_PREFIX}{}\n",
            signer.public(),
            crate::pipeline::hex(seed)
        );
        Ok((signer, text))
    }

    /// Reads the secret from a key file's text (`#` lines are comments).
    pub fn parse(text: &str) -> Option<Signer> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))?;
        let seed = unhex::<32>(line.strip_prefix(SECRET_PREFIX)?)?;
        Some(Signer {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs a manifest's own SHA-256.
    pub(crate) fn sign(&self, manifest_sha256: &str) -> ManifestSignature {
        let sig = self
            .key
            .sign(format!("{CONTEXT}{manifest_sha256}").as_bytes());
        ManifestSignature {
            key: self.public().to_string(),
            value: crate::pipeline::hex(sig.to_bytes()),
        }
    }
}

/// The public keys whose signatures this host accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<PublicKey>,
}

impl Trust {
    /// Whether any key is trusted (else nothing can be authenticated, and nothing is asked to).
    pub fn trusts_anyone(&self) -> bool {
        !self.keys.is_empty()
    }

    /// `trusted_keys`, and the public half of this host's own signing key when it has one.
    pub fn from_config(cfg: Option<&SigningConfig>) -> Trust {
        let Some(cfg) = cfg else {
            return Trust::default();
        };
        let mut keys: Vec<PublicKey> = cfg
            .trusted_keys
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        match Signer::from_config(Some(cfg)) {
            Ok(Some(signer)) => keys.push(signer.public()),
            Ok(None) => {}
            Err(e) => tracing::warn!("this host's own signing key is not trusted: {e}"),
        }
        Trust { keys }
    }

    /// How far a manifest (read through [`Manifest::parse`], which checked its own
    /// checksum) can be believed.
    pub fn authenticity(&self, m: &Manifest) -> Authenticity {
        let Some(integrity) = &m.integrity else {
            return Authenticity::Unchecked;
        };
        let Some(sig) = &integrity.signature else {
            return Authenticity::Unsigned;
        };
        let Ok(key) = sig.key.parse::<PublicKey>() else {
            return Authenticity::Bad {
                reason: format!("its signature names no usable key ({:?})", sig.key),
            };
        };
        let valid = unhex::<64>(&sig.value)
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .is_some_and(|s| {
                key.0
                    .verify_strict(format!("{CONTEXT}{}", integrity.sha256).as_bytes(), &s)
                    .is_ok()
            });
        let key_text = key.to_string();
        match (valid, self.keys.contains(&key)) {
            (false, _) => Authenticity::Bad {
                reason: format!("its signature by {key_text} does not verify"),
            },
            (true, true) => Authenticity::Authenticated { key: key_text },
            (true, false) => Authenticity::UntrustedKey { key: key_text },
        }
    }
}

/// What a manifest's checksum and signature say about who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Authenticity {
    /// Signed by a key this host trusts.
    Authenticated { key: String },
    /// Its own checksum matches; nobody signed it.
    Unsigned,
    /// A valid signature, by a key this host does not trust.
    UntrustedKey { key: String },
    /// Written before manifests carried a checksum of their own.
    Unchecked,
    /// A signature that does not verify: the manifest was changed or forged.
    Bad { reason: String },
}

impl Authenticity {
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Authenticity::Authenticated { .. })
    }
}

impl fmt::Display for Authenticity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authenticity::Authenticated { key } => write!(f, "authenticated (signed by {key})"),
            Authenticity::Unsigned => f.write_str("unsigned (its own checksum matches)"),
            Authenticity::UntrustedKey { key } => {
                write!(
                    f,
                    "unsigned here (signed by {key}, a key this host does not trust)"
                )
            }
            Authenticity::Unchecked => {
                f.write_str("unchecked (written before manifests carried their own checksum)")
            }
            Authenticity::Bad { reason } => write!(f, "BAD: {reason}"),
        }
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim().as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_refused() {
        let (signer, text) = Signer::generate().unwrap();
        let again = Signer::parse(&text).unwrap();
        assert_eq!(again.public(), signer.public());
        let public = signer.public().to_string();
        assert!(public.starts_with("ed25519:") && public.len() == 8 + 64);
        assert_eq!(public.parse::<PublicKey>().unwrap(), signer.public());
        assert!(!format!("{signer:?}").contains(text.lines().nth(1).unwrap()));
        for bad in ["", "ed25519:00", "ed25519-secret:zz", &public] {
            assert!(Signer::parse(bad).is_none(), "{bad}");
        }
        assert!("ed25519:xyz".parse::<PublicKey>().is_err());
    }
}
