//! Ed25519 public keys as JWKs (RFC 8037), identified by their RFC 7638 thumbprint. Shared by
//! the function (to publish and check keys) and the `mp3conv` binary (to generate dev keys).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One public key in a JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JSON Web Key Set of Ed25519 keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

impl PublicJwk {
    /// The JWK of a raw 32-byte Ed25519 public key, with its thumbprint as `kid`.
    pub fn from_public_key(public_key: &[u8; 32]) -> PublicJwk {
        let x = URL_SAFE_NO_PAD.encode(public_key);
        PublicJwk {
            kid: thumbprint(&x),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }
}

/// RFC 7638 thumbprint of an Ed25519 JWK: SHA-256 over its required members in
/// lexicographic order, base64url.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Reads a PKCS#8 Ed25519 private key in PEM form.
pub fn signing_key_from_pem(pem: &str) -> Result<ed25519_dalek::SigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
        .map_err(|_| "the signing key is not a PKCS#8 Ed25519 private key in PEM form".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037, appendix A.3: the thumbprint of the example public key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn reads_ed25519_pkcs8_and_refuses_the_rest() {
        // RFC 8410, section 10.3: an Ed25519 private key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----";
        let key = signing_key_from_pem(pem).unwrap();
        let jwk = PublicJwk::from_public_key(&key.verifying_key().to_bytes());
        assert_eq!(jwk.kid, thumbprint(&jwk.x));
        assert!(signing_key_from_pem("not a key").is_err());
        // The same bytes under X25519's OID are not a signing key.
        let x25519 = pem.replace("MC4CAQAwBQYDK2Vw", "MC4CAQAwBQYDK2Vu");
        assert!(signing_key_from_pem(&x25519).is_err());
    }
}
