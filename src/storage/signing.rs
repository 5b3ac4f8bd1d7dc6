//! HMAC-signed, expiring download links for files the app serves itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks `(key, expires)` pairs with a server secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

/// Why a signed link was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The link's time is up.
    #[error("link expired")]
    Expired,
}

impl UrlSigner {
    /// A signer with the given secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn mac(&self, key: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// Lowercase hex signature of `key` valid until `expires` (Unix seconds).
    pub fn sign(&self, key: &str, expires: i64) -> String {
        hex::encode(self.mac(key, expires).finalize().into_bytes())
    }

    /// Checks the signature in constant time, then the expiry against `now`.
    pub fn verify(
        &self,
        key: &str,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), VerifyError> {
        let given = hex::decode(signature).map_err(|_| VerifyError::BadSignature)?;
        self.mac(key, expires)
            .verify_slice(&given)
            .map_err(|_| VerifyError::BadSignature)?;
        if now >= expires {
            return Err(VerifyError::Expired);
        }
        Ok(())
    }
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let signer = UrlSigner::new("secret");
        let sig = signer.sign("abc", 100);
        assert_eq!(signer.verify("abc", 100, &sig, 99), Ok(()));
        assert_eq!(
            signer.verify("abc", 100, &sig, 100),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            signer.verify("abd", 100, &sig, 99),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            signer.verify("abc", 101, &sig, 99),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            signer.verify("abc", 100, "zz", 99),
            Err(VerifyError::BadSignature)
        );
        let other = UrlSigner::new("other");
        assert_eq!(
            other.verify("abc", 100, &sig, 99),
            Err(VerifyError::BadSignature)
        );
    }
}
