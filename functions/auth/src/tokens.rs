//! Access tokens: EdDSA (Ed25519) JWTs with `kid` in the header, verified only against the
//! configured public keys, with audience, issuer and expiry checked.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mp3conv_tokens::Verifier;

use std::cell::OnceCell;

use crate::config::Config;
use crate::keys::Jwks;

pub use mp3conv_tokens::{Claims, TokenError};

/// Issues and verifies tokens with the configured keys.
pub struct Tokens {
    config: Config,
    verifier: Verifier,
    /// The signing key, read on the first token issued: most requests only verify.
    signer: OnceCell<Result<Signer, String>>,
}

struct Signer {
    encoding: EncodingKey,
    kid: String,
}

impl Tokens {
    pub fn new(config: &Config) -> Result<Tokens, String> {
        let verifier = Verifier::new(&config.public_keys, &config.issuer, &config.audience)?;
        Ok(Tokens {
            config: config.clone(),
            verifier,
            signer: OnceCell::new(),
        })
    }

    /// Whether tokens can be issued: the signing key reads and is among the public keys.
    /// Login asks first, so that a misconfigured deployment answers 500 before it counts the
    /// attempt or spends a password check.
    pub fn can_issue(&self) -> Result<(), String> {
        self.signer().map(|_| ())
    }

    fn signer(&self) -> Result<&Signer, String> {
        self.signer
            .get_or_init(|| {
                let key = self
                    .config
                    .signing_key()
                    .map_err(|err| format!("configuration: {err}"))?;
                let encoding =
                    EncodingKey::from_ed_pem(self.config.signing_key_pem.expose().as_bytes())
                        .map_err(|err| format!("signing key: {err}"))?;
                Ok(Signer {
                    encoding,
                    kid: key.kid,
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A new token for a user, and its lifetime in seconds.
    pub fn issue(
        &self,
        user_id: &str,
        email: &str,
        now_secs: u64,
    ) -> Result<(String, u64), String> {
        let signer = self.signer()?;
        let ttl_secs = self.config.token_ttl.as_secs();
        let claims = Claims {
            sub: user_id.to_owned(),
            email: email.to_owned(),
            iat: now_secs,
            exp: now_secs + ttl_secs,
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding)
            .map_err(|err| format!("signing failed: {err}"))?;
        Ok((token, ttl_secs))
    }

    /// The claims of a valid token (see [`Verifier::verify`]).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verifier.verify(token)
    }

    /// The public keys, for `/auth/jwks.json`.
    pub fn jwks(&self) -> &Jwks {
        &self.config.public_keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::test_config;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn issued_tokens_verify() {
        let tokens = Tokens::new(&test_config()).unwrap();
        let (token, ttl) = tokens.issue("u1", "a@b.c", now()).unwrap();
        assert_eq!(ttl, 3600);
        let claims = tokens.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.email.as_str()),
            ("u1", "a@b.c")
        );
        assert_eq!(claims.exp - claims.iat, 3600);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            header.kid.as_deref(),
            Some(test_config().signing_key().unwrap().kid.as_str())
        );
    }

    /// Verifying never reads the signing key, so a bad one only stops tokens being issued.
    #[test]
    fn verifying_needs_no_signing_key() {
        let (token, _) = Tokens::new(&test_config())
            .unwrap()
            .issue("u1", "a@b.c", now())
            .unwrap();
        let mut config = test_config();
        config.signing_key_pem = mp3conv_kit::config::Secret::new("not a key".to_owned());
        let tokens = Tokens::new(&config).unwrap();
        assert_eq!(tokens.verify(&token).unwrap().sub, "u1");
        let err = tokens.issue("u1", "a@b.c", now()).unwrap_err();
        assert!(
            err.starts_with("configuration: variable `jwt_signing_key`"),
            "{err}"
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_while_their_key_is_listed() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let old = test_config();
        let new_key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let new_pem = new_key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap()
            .to_string();
        let new_jwk = crate::keys::PublicJwk::from_public_key(&new_key.verifying_key().to_bytes());
        let mut rotated = old.clone();
        rotated.signing_key_pem = mp3conv_kit::config::Secret::new(new_pem);
        rotated.public_keys.keys.push(new_jwk);

        let (old_token, _) = Tokens::new(&old)
            .unwrap()
            .issue("u1", "a@b.c", now())
            .unwrap();
        let rotated_tokens = Tokens::new(&rotated).unwrap();
        let (new_token, _) = rotated_tokens.issue("u1", "a@b.c", now()).unwrap();
        assert!(
            rotated_tokens.verify(&old_token).is_ok(),
            "the old key is still listed"
        );
        assert!(rotated_tokens.verify(&new_token).is_ok());

        let mut retired = rotated.clone();
        retired.public_keys.keys.remove(0);
        let retired_tokens = Tokens::new(&retired).unwrap();
        assert_eq!(
            retired_tokens.verify(&old_token),
            Err(TokenError::UnknownKey)
        );
        assert!(retired_tokens.verify(&new_token).is_ok());
    }

    #[test]
    fn refuses_bad_tokens() {
        let config = test_config();
        let tokens = Tokens::new(&config).unwrap();
        let (good, _) = tokens.issue("u1", "a@b.c", now()).unwrap();
        let (expired, _) = tokens.issue("u1", "a@b.c", now() - 7200).unwrap();

        let mut other_audience = config.clone();
        other_audience.audience = "someone-else".into();
        let (wrong_aud, _) = Tokens::new(&other_audience)
            .unwrap()
            .issue("u1", "a@b.c", now())
            .unwrap();
        let mut other_issuer = config.clone();
        other_issuer.issuer = "evil".into();
        let (wrong_iss, _) = Tokens::new(&other_issuer)
            .unwrap()
            .issue("u1", "a@b.c", now())
            .unwrap();

        let parts: Vec<&str> = good.split('.').collect();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let tampered = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        let claims_b64 = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({"sub":"admin","email":"a@b.c","iat":now(),"exp":now()+60,"iss":"mp3conv","aud":"mp3conv","jti":"x"})).unwrap(),
        );
        let swapped_claims = format!("{}.{}.{}", parts[0], claims_b64, parts[2]);
        // HS256 signed with the public key bytes: the classic algorithm-confusion attack.
        let x = &config.public_keys.keys[0].x;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(config.signing_key().unwrap().kid);
        let claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let hs256 = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(x.as_bytes()))
            .unwrap();

        for (name, token) in [
            ("expired", expired.as_str()),
            ("wrong audience", &wrong_aud),
            ("wrong issuer", &wrong_iss),
            ("alg none", &none),
            ("tampered signature", &tampered),
            ("swapped claims", &swapped_claims),
            ("hs256 confusion", &hs256),
            ("garbage", "not.a.token"),
            ("empty", ""),
        ] {
            assert!(tokens.verify(token).is_err(), "{name} must be refused");
        }
    }
}
