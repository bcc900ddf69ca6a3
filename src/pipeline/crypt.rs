//! Client-side encryption with age: the stage between zstd and the SHA-256 on backup, and
//! between the checksum and zstd on restore.
//!
//! The checksum covers the stored (encrypted) bytes, so `verify` needs no key. Keys come from
//! the config (public recipients), an identity file named by path, or a passphrase read from
//! an environment variable; none of them is ever copied into a manifest, job record or log.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;

use age::secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::manifest::EncryptionInfo;

/// The scheme a manifest records for age-encrypted data.
pub const SCHEME: &str = "age";
/// The recipient a manifest records for a passphrase (the passphrase itself never is).
pub const PASSPHRASE: &str = "passphrase";

/// `[encryption]` in lifeboat.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age X25519 public keys (`age1...`) to encrypt new backups to.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The environment variable holding a passphrase (instead of recipients).
    pub passphrase_env: Option<String>,
    /// An age identity file for restores of recipient-encrypted backups. Only the path is
    /// kept; the file is read when a restore needs it.
    pub identity_file: Option<PathBuf>,
}

impl EncryptionConfig {
    /// Checked when the config is loaded, so a typo in a key fails before any backup runs.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.recipients.is_empty() && self.passphrase_env.is_some() {
            return Err(
                "encryption: age cannot mix a passphrase with recipients; set either `recipients` or `passphrase_env`"
                    .into(),
            );
        }
        for r in &self.recipients {
            r.parse::<age::x25519::Recipient>().map_err(|_| {
                format!("encryption.recipients: {r:?} is not an age X25519 public key (age1...)")
            })?;
        }
        if let Some(var) = &self.passphrase_env
            && var.is_empty()
        {
            return Err("encryption.passphrase_env is empty".into());
        }
        Ok(())
    }

    /// Whether new backups are encrypted.
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty() || self.passphrase_env.is_some()
    }
}

/// What new backups are encrypted to, resolved before the snapshot is taken.
pub struct Seal {
    kind: SealKind,
}

enum SealKind {
    Recipients(Vec<age::x25519::Recipient>, Vec<String>),
    Passphrase(SecretString),
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the passphrase.
        f.debug_struct("Seal").field("info", &self.info()).finish()
    }
}

impl Seal {
    /// The seal a config asks for; `None` when backups are not encrypted.
    pub fn from_config(cfg: Option<&EncryptionConfig>) -> Result<Option<Seal>> {
        let Some(cfg) = cfg.filter(|c| c.encrypts()) else {
            return Ok(None);
        };
        if let Some(var) = &cfg.passphrase_env {
            let pass = passphrase(var, "encrypt new backups")?;
            return Ok(Some(Seal {
                kind: SealKind::Passphrase(pass),
            }));
        }
        let keys = cfg
            .recipients
            .iter()
            .map(|r| {
                r.parse::<age::x25519::Recipient>()
                    .map_err(|_| Error::Invalid(format!("{r:?} is not an age X25519 public key")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Seal {
            kind: SealKind::Recipients(keys, cfg.recipients.clone()),
        }))
    }

    /// What the manifest records: the scheme and public recipients, never key material.
    pub fn info(&self) -> EncryptionInfo {
        EncryptionInfo {
            scheme: SCHEME.into(),
            recipients: match &self.kind {
                SealKind::Recipients(_, shown) => shown.clone(),
                SealKind::Passphrase(_) => vec![PASSPHRASE.into()],
            },
        }
    }

    fn encryptor(&self) -> Result<age::Encryptor> {
        match &self.kind {
            SealKind::Recipients(keys, _) => {
                age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                    .map_err(|e| Error::Invalid(format!("age: {e}")))
            }
            SealKind::Passphrase(pass) => Ok(age::Encryptor::with_user_passphrase(pass.clone())),
        }
    }
}

fn passphrase(var: &str, what: &str) -> Result<SecretString> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(SecretString::from(p)),
        _ => Err(Error::Invalid(format!(
            "to {what} the environment variable {var} (encryption.passphrase_env) must hold the passphrase; it is not set"
        ))),
    }
}

/// The writer under zstd on backup: plain, or an age stream over it.
pub(crate) enum Sealed<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Sealed<W> {
    pub fn new(inner: W, seal: Option<&Seal>) -> Result<Self> {
        Ok(match seal {
            None => Sealed::Plain(inner),
            Some(seal) => Sealed::Age(
                seal.encryptor()?
                    .wrap_output(inner)
                    .map_err(Error::io("age"))?,
            ),
        })
    }

    /// Writes age's final chunk and hands the inner writer back.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(data),
            Sealed::Age(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

/// The keys that open one encrypted backup, gathered before anything is downloaded or any
/// target is created, so a missing key fails first and touches nothing.
pub struct Unseal {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for Unseal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unseal({} identities)", self.identities.len())
    }
}

impl Unseal {
    pub fn for_backup(
        id: &str,
        info: &EncryptionInfo,
        cfg: Option<&EncryptionConfig>,
    ) -> Result<Unseal> {
        if info.scheme != SCHEME {
            return Err(Error::Unsupported(format!(
                "backup {id} is encrypted with {:?}; this lifeboat reads age",
                info.scheme
            )));
        }
        let by_passphrase = info.recipients.iter().any(|r| r == PASSPHRASE);
        let identities: Vec<Box<dyn age::Identity + Send + Sync>> = if by_passphrase {
            let var = cfg.and_then(|c| c.passphrase_env.as_deref()).ok_or_else(|| {
                Error::Invalid(format!(
                    "backup {id} is encrypted with a passphrase: set encryption.passphrase_env to the environment variable that holds it; nothing was restored"
                ))
            })?;
            let mut identity =
                age::scrypt::Identity::new(passphrase(var, &format!("decrypt backup {id}"))?);
            // Accept the work factor of any passphrase that took up to ~1 min to derive.
            identity.set_max_work_factor(22);
            vec![Box::new(identity)]
        } else {
            let path = cfg.and_then(|c| c.identity_file.as_ref()).ok_or_else(|| {
                Error::Invalid(format!(
                    "backup {id} is encrypted to {}: set encryption.identity_file to the age identity file that holds the matching key; nothing was restored",
                    info.recipients.join(", ")
                ))
            })?;
            let file = age::IdentityFile::from_file(path.display().to_string()).map_err(|e| {
                Error::Invalid(format!(
                    "cannot read the age identity file {} (encryption.identity_file): {e}",
                    path.display()
                ))
            })?;
            file.into_identities().map_err(|e| {
                Error::Invalid(format!(
                    "the age identity file {} cannot be used: {e}",
                    path.display()
                ))
            })?
        };
        Ok(Unseal { identities })
    }

    /// A reader of the plaintext under `input`.
    pub fn open<R: BufRead + Send + 'static>(&self, input: R) -> Result<Box<dyn Read + Send>> {
        let decryptor = age::Decryptor::new_buffered(input).map_err(|e| {
            Error::Invalid(format!("the data object is not a readable age file: {e}"))
        })?;
        let reader = decryptor
            .decrypt(self.identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::Invalid(
                    "none of the configured age identities opens this backup (check encryption.identity_file or the passphrase)".into(),
                ),
                e => Error::Invalid(format!("cannot decrypt the backup: {e}")),
            })?;
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_recipients_and_mixed_schemes_are_refused() {
        let bad = EncryptionConfig {
            recipients: vec!["age1nope".into()],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("age1nope"));
        let key = age::x25519::Identity::generate().to_public().to_string();
        let mixed = EncryptionConfig {
            recipients: vec![key.clone()],
            passphrase_env: Some("X".into()),
            ..Default::default()
        };
        assert!(mixed.validate().is_err());
        let good = EncryptionConfig {
            recipients: vec![key],
            ..Default::default()
        };
        good.validate().unwrap();
    }

    #[test]
    fn sealed_round_trips_and_hides_the_plaintext() {
        let id = age::x25519::Identity::generate();
        let cfg = EncryptionConfig {
            recipients: vec![id.to_public().to_string()],
            ..Default::default()
        };
        let seal = Seal::from_config(Some(&cfg)).unwrap().unwrap();
        let mut w = Sealed::new(Vec::new(), Some(&seal)).unwrap();
        w.write_all(b"CREATE TABLE secret_orders").unwrap();
        let sealed = w.finish().unwrap();
        assert!(!sealed.windows(13).any(|w| w == b"secret_orders"));
        let unseal = Unseal {
            identities: vec![Box::new(id)],
        };
        let mut out = String::new();
        unseal
            .open(io::Cursor::new(sealed))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "CREATE TABLE secret_orders");
        assert_eq!(seal.info().recipients, cfg.recipients);
    }
}
