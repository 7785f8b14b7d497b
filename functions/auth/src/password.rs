//! Password hashing: argon2id in PHC string form with OWASP's parameters (19 MiB, t=2, p=1).

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's recommended argon2id setting: 19 MiB of memory, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt.
pub fn hash(password: &str) -> Result<String, String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| format!("hashing failed: {err}"))
}

/// Whether `password` matches the PHC string `hash` (a malformed hash never matches).
pub fn verify(password: &str, hash: &str) -> bool {
    argon2().verify_password(password.as_bytes(), hash).is_ok()
}

/// Spends the same work as a real verification, for logins with an unknown email, so timing
/// does not tell which emails have accounts.
pub fn verify_against_nothing(password: &str) {
    // A hash of a random password with the same parameters; it matches nothing.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Dyzd0PBlzhWPNUXgmBhp0rcG/ba5yQyoiJWmkzYzZM";
    let _ = verify(password, DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let first = hash("correct horse").unwrap();
        let second = hash("correct horse").unwrap();
        assert!(
            first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{first}"
        );
        assert_ne!(first, second, "a fresh salt each time");
        assert!(verify("correct horse", &first));
        assert!(!verify("correct horse!", &first));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!first.contains("correct"));
    }
}
