//! Secret codes: upload codes (8 of `A-Z0-9`), verification codes (9 of `a-z0-9`) and
//! storage keys (random, never derived from user input).

use rand::Rng;
use rand::distr::Uniform;

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Length of an upload code.
pub const UPLOAD_CODE_LEN: usize = 8;
/// Length of a verification code.
pub const VERIFICATION_CODE_LEN: usize = 9;

fn random_from(alphabet: &[u8], len: usize) -> String {
    // `rand::rng()` is a CSPRNG (ChaCha) seeded from the operating system.
    let mut rng = rand::rng();
    let pick = Uniform::new(0, alphabet.len()).expect("alphabet is not empty");
    (0..len)
        .map(|_| char::from(alphabet[rng.sample(pick)]))
        .collect()
}

/// A fresh upload code, for example `Q7ZK2M0A`.
pub fn new_upload_code() -> String {
    random_from(UPPER_ALNUM, UPLOAD_CODE_LEN)
}

/// A fresh verification code, for example `k3v9q0zpa`.
pub fn new_verification_code() -> String {
    random_from(LOWER_ALNUM, VERIFICATION_CODE_LEN)
}

/// A fresh storage key: 128 random bits in lowercase hex.
pub fn new_storage_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A fresh secret of 256 random bits in URL-safe base64, for API keys and signing keys.
pub fn new_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `s` could be an upload code: checked before touching the database.
pub fn looks_like_upload_code(s: &str) -> bool {
    s.len() == UPLOAD_CODE_LEN && s.bytes().all(|b| UPPER_ALNUM.contains(&b))
}

/// Whether `s` could be a verification code.
pub fn looks_like_verification_code(s: &str) -> bool {
    s.len() == VERIFICATION_CODE_LEN && s.bytes().all(|b| LOWER_ALNUM.contains(&b))
}

/// Whether `s` could be a storage key.
pub fn looks_like_storage_key(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn upload_codes_have_the_documented_shape() {
        for _ in 0..1000 {
            let code = new_upload_code();
            assert!(looks_like_upload_code(&code), "{code}");
        }
    }

    #[test]
    fn verification_codes_have_the_documented_shape() {
        for _ in 0..1000 {
            let code = new_verification_code();
            assert!(looks_like_verification_code(&code), "{code}");
        }
    }

    #[test]
    fn codes_do_not_repeat_and_use_the_whole_alphabet() {
        let codes: Vec<String> = (0..2000).map(|_| new_upload_code()).collect();
        let unique: HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        let used: HashSet<u8> = codes.iter().flat_map(|c| c.bytes()).collect();
        assert_eq!(used.len(), UPPER_ALNUM.len());
    }

    #[test]
    fn shape_checks_refuse_near_misses() {
        assert!(!looks_like_upload_code("abcdefgh"));
        assert!(!looks_like_upload_code("ABCDEFG"));
        assert!(!looks_like_upload_code("ABCDEFGH1"));
        assert!(!looks_like_verification_code("ABCDEFGHI"));
        assert!(!looks_like_verification_code("abc/../de"));
        assert!(looks_like_storage_key(&new_storage_key()));
        assert!(!looks_like_storage_key("../../etc/passwd"));
    }
}
