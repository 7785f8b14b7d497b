//! Token signing keys: generation (`mp3conv keys generate`, and `mp3conv up` on first run) and
//! the JWKS that goes with them. Keys live only on disk, never in the repository.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use mp3conv_tokens::keys::{Jwks, PublicJwk};

/// A signing key and the public key set that verifies it.
pub struct KeyPair {
    pub signing_pem: String,
    pub jwks: Jwks,
}

impl KeyPair {
    pub fn kid(&self) -> &str {
        &self.jwks.keys[0].kid
    }

    pub fn jwks_json(&self) -> String {
        serde_json::to_string(&self.jwks).expect("a JWKS serialises")
    }
}

/// A fresh Ed25519 key pair.
pub fn generate() -> anyhow::Result<KeyPair> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let signing_pem = signing
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .context("encoding the key")?
        .to_string();
    Ok(KeyPair {
        signing_pem,
        jwks: jwks_for(&signing),
    })
}

fn jwks_for(signing: &ed25519_dalek::SigningKey) -> Jwks {
    Jwks {
        keys: vec![PublicJwk::from_public_key(
            &signing.verifying_key().to_bytes(),
        )],
    }
}

/// The signing key file inside a key directory.
/// A fresh random secret (256 bits, hex), e.g. the worker's internal token for one run.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn signing_key_path(dir: &Path) -> PathBuf {
    dir.join("jwt-signing.pem")
}

/// Writes `pair` into `dir`: the private key readable by its owner only, and `jwks.json`.
pub fn write(dir: &Path, pair: &KeyPair) -> anyhow::Result<()> {
    mp3conv_host::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = signing_key_path(dir);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(pair.signing_pem.as_bytes())?;
    std::fs::write(dir.join("jwks.json"), pair.jwks_json() + "\n")?;
    Ok(())
}

/// The development key pair kept in `dir`, generated on first use.
pub fn load_or_generate(dir: &Path) -> anyhow::Result<KeyPair> {
    let path = signing_key_path(dir);
    if path.exists() {
        let signing_pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let signing = mp3conv_tokens::keys::signing_key_from_pem(&signing_pem)
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        return Ok(KeyPair {
            jwks: jwks_for(&signing),
            signing_pem,
        });
    }
    let pair = generate()?;
    write(dir, &pair)?;
    tracing::info!(kid = pair.kid(), path = %path.display(), "generated a development signing key");
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generated_keys_round_trip_and_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path()).unwrap();
        let mode = std::fs::metadata(signing_key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_generate(dir.path()).unwrap();
        assert_eq!(first.kid(), again.kid(), "the same key on the next run");
        assert_ne!(generate().unwrap().kid(), first.kid());
        assert!(
            write(dir.path(), &generate().unwrap()).is_err(),
            "never overwrites a key"
        );
    }
}
