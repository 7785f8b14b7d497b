//! mp3conv's access tokens, shared by the functions that issue them (auth) and the ones that
//! only check them (the gateway): Ed25519 public keys as JWKs ([`keys`]) and the verification
//! of EdDSA JWTs against them ([`Verifier`]).

pub mod keys;

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::Jwks;

/// The claims every token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub email: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    /// A unique token id.
    pub jti: String,
}

/// Why a token was refused. Callers answer every variant the same way (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    UnknownKey,
    Invalid(String),
}

/// Checks tokens against a set of public keys, an issuer and an audience. Holds no secret.
pub struct Verifier {
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Verifier {
    pub fn new(public_keys: &Jwks, issuer: &str, audience: &str) -> Result<Verifier, String> {
        let mut decoding = HashMap::new();
        for key in &public_keys.keys {
            if key.kty != "OKP" || key.crv != "Ed25519" {
                return Err(format!("public key `{}` is not an Ed25519 key", key.kid));
            }
            let decoded = DecodingKey::from_ed_components(&key.x)
                .map_err(|err| format!("public key `{}`: {err}", key.kid))?;
            decoding.insert(key.kid.clone(), decoded);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = 0;
        Ok(Verifier {
            decoding,
            validation,
        })
    }

    /// The claims of a valid token. Only EdDSA with a listed `kid` is accepted, so `none`
    /// and HMAC-with-the-public-key tokens never verify.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| TokenError::Invalid(err.to_string()))
    }
}
