//! Signed receipts: proof, for a student, of exactly what the service accepted. Each field is
//! signed on its own (bound to the verification code) and the whole receipt once more, so a
//! verifier can say which field was changed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const CONTEXT: &str = "exam-depository receipt v1";

/// The signed facts of an accepted upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    /// The student's nickname.
    pub nickname: String,
    /// The submission's verification code.
    pub verification_code: String,
    /// The file name the student's browser sent (sanitised).
    pub original_filename: String,
    /// Exact size in bytes.
    pub size_bytes: i64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// When the upload was accepted (RFC 3339).
    pub accepted_at: String,
    /// Which attempt it was (1 = first).
    pub attempt: i64,
    /// The service that accepted it.
    pub service_url: String,
    /// The signer's Ed25519 public key (base64); check it against `/receipts/public-key`.
    pub public_key: String,
    /// Base64 Ed25519 signature of each field.
    pub field_signatures: BTreeMap<String, String>,
    /// Base64 Ed25519 signature of all fields together.
    pub signature: String,
}

impl Receipt {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("nickname", self.nickname.clone()),
            ("verification_code", self.verification_code.clone()),
            ("original_filename", self.original_filename.clone()),
            ("size_bytes", self.size_bytes.to_string()),
            ("sha256", self.sha256.clone()),
            ("accepted_at", self.accepted_at.clone()),
            ("attempt", self.attempt.to_string()),
            ("service_url", self.service_url.clone()),
        ]
    }

    fn field_message(&self, field: &str, value: &str) -> Vec<u8> {
        format!("{CONTEXT}\0{}\0{field}\0{value}", self.verification_code).into_bytes()
    }

    fn whole_message(&self) -> Vec<u8> {
        let mut message = format!("{CONTEXT}\0all");
        for (field, value) in self.fields() {
            message.push_str(&format!("\0{field}\0{}\0{value}", value.len()));
        }
        message.into_bytes()
    }
}

/// Why a receipt does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Signed by another key than the expected one.
    #[error("the receipt was signed with another key than this service's")]
    WrongKey,
    /// These fields were changed after signing.
    #[error("changed after signing: {}", .0.join(", "))]
    Changed(Vec<String>),
    /// Not a receipt at all.
    #[error("malformed receipt: {0}")]
    Malformed(String),
}

/// Signs receipts with the service's Ed25519 key.
#[derive(Clone)]
pub struct ReceiptSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptSigner({})", self.public_key_base64())
    }
}

impl ReceiptSigner {
    /// A signer from a base64 32-byte seed.
    pub fn from_base64_seed(seed: &str) -> Result<Self, String> {
        let bytes = B64
            .decode(seed.trim())
            .map_err(|e| format!("RECEIPT_SIGNING_KEY is not base64: {e}"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "RECEIPT_SIGNING_KEY must be 32 bytes (base64)".to_owned())?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh random seed, base64.
    pub fn new_seed() -> String {
        B64.encode(rand::random::<[u8; 32]>())
    }

    /// The public key, base64.
    pub fn public_key_base64(&self) -> String {
        B64.encode(self.key.verifying_key().as_bytes())
    }

    /// Fills in the public key and every signature.
    pub fn sign(&self, mut receipt: Receipt) -> Receipt {
        receipt.public_key = self.public_key_base64();
        receipt.field_signatures = receipt
            .fields()
            .into_iter()
            .map(|(field, value)| {
                let signature = self.key.sign(&receipt.field_message(field, &value));
                (field.to_owned(), B64.encode(signature.to_bytes()))
            })
            .collect();
        receipt.signature = B64.encode(self.key.sign(&receipt.whole_message()).to_bytes());
        receipt
    }
}

fn signature(b64: &str) -> Option<Signature> {
    let bytes: [u8; 64] = B64.decode(b64).ok()?.try_into().ok()?;
    Some(Signature::from_bytes(&bytes))
}

/// Checks a receipt against the service's public key (base64), naming changed fields.
pub fn verify(receipt: &Receipt, public_key: &str) -> Result<(), ReceiptError> {
    let key_bytes: [u8; 32] = B64
        .decode(public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ReceiptError::Malformed("bad public key".into()))?;
    let key =
        VerifyingKey::from_bytes(&key_bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if receipt.public_key.trim() != public_key.trim() {
        return Err(ReceiptError::WrongKey);
    }
    let valid = |message: &[u8], b64: Option<&String>| {
        b64.and_then(|s| signature(s))
            .is_some_and(|s| key.verify(message, &s).is_ok())
    };
    let changed: Vec<String> = receipt
        .fields()
        .into_iter()
        .filter(|(field, value)| {
            !valid(
                &receipt.field_message(field, value),
                receipt.field_signatures.get(*field),
            )
        })
        .map(|(field, _)| field.to_owned())
        .collect();
    let whole = valid(&receipt.whole_message(), Some(&receipt.signature));
    match (changed.is_empty(), whole) {
        (true, true) => Ok(()),
        (true, false) => Err(ReceiptError::Changed(vec!["signature".into()])),
        // Every field signature includes the verification code: if all fail, it is the code.
        (false, _) if changed.len() == receipt.fields().len() => {
            Err(ReceiptError::Changed(vec!["verification_code".into()]))
        }
        (false, _) => Err(ReceiptError::Changed(changed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            nickname: "ada".into(),
            verification_code: "abcdefghi".into(),
            original_filename: "answer.pdf".into(),
            size_bytes: 1234,
            sha256: "ab".repeat(32),
            accepted_at: "2026-12-03T10:00:00.000Z".into(),
            attempt: 2,
            service_url: "https://exam.example".into(),
            public_key: String::new(),
            field_signatures: BTreeMap::new(),
            signature: String::new(),
        }
    }

    #[test]
    fn round_trip_and_each_tampered_field_is_named() {
        let signer = ReceiptSigner::from_base64_seed(&ReceiptSigner::new_seed()).unwrap();
        let signed = signer.sign(receipt());
        let key = signer.public_key_base64();
        assert_eq!(verify(&signed, &key), Ok(()));
        let json = serde_json::to_string(&signed).unwrap();
        assert_eq!(verify(&serde_json::from_str(&json).unwrap(), &key), Ok(()));

        type Tamper = fn(&mut Receipt);
        let tamper: [(&str, Tamper); 8] = [
            ("nickname", |r| r.nickname = "eve".into()),
            ("verification_code", |r| {
                r.verification_code = "zzzzzzzzz".into()
            }),
            ("original_filename", |r| {
                r.original_filename = "other.pdf".into()
            }),
            ("size_bytes", |r| r.size_bytes += 1),
            ("sha256", |r| r.sha256 = "cd".repeat(32)),
            ("accepted_at", |r| {
                r.accepted_at = "2026-12-03T09:00:00.000Z".into()
            }),
            ("attempt", |r| r.attempt = 1),
            ("service_url", |r| {
                r.service_url = "https://evil.example".into()
            }),
        ];
        for (field, change) in tamper {
            let mut forged = signed.clone();
            change(&mut forged);
            assert_eq!(
                verify(&forged, &key),
                Err(ReceiptError::Changed(vec![field.to_owned()])),
                "{field}"
            );
        }
        let other = ReceiptSigner::from_base64_seed(&ReceiptSigner::new_seed()).unwrap();
        assert_eq!(
            verify(&other.sign(receipt()), &key),
            Err(ReceiptError::WrongKey)
        );
        let mut resigned = other.sign(receipt());
        resigned.public_key = key.clone();
        assert!(matches!(
            verify(&resigned, &key),
            Err(ReceiptError::Changed(_))
        ));
    }

    #[test]
    fn bad_seeds_are_refused() {
        assert!(ReceiptSigner::from_base64_seed("not base64!").is_err());
        assert!(ReceiptSigner::from_base64_seed(&B64.encode([1u8; 16])).is_err());
    }
}
