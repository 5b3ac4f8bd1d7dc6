//! Examiner authentication: `Authorization: Bearer <api key>`, compared in constant time
//! against the configured keys. Every failure looks the same to the client.

use super::AppState;
use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The examiner API keys in force, kept as SHA-256 digests so every comparison has the
/// same length and cost.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Keys from a comma-separated list; blanks are ignored.
    pub fn from_list(list: &str) -> Self {
        Self {
            digests: list
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `candidate` is one of the keys. Looks at every key, in constant time each.
    pub fn accepts(&self, candidate: &str) -> bool {
        let digest = digest(candidate);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&digest)
            })
            .into()
    }
}

/// SHA-256 of a key: what is compared and what the database stores (as hex).
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

/// Proof that the request carries a valid examiner key, and which one.
#[derive(Debug, Clone)]
pub struct Examiner {
    /// The key's name, or `AUTH_TOKEN` for a configured key.
    pub key_name: String,
}

impl FromRequestParts<AppState> for Examiner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .unwrap_or_default();
        if state.api_keys.accepts(token) {
            return Ok(Self {
                key_name: "AUTH_TOKEN".into(),
            });
        }
        if !token.is_empty() {
            let stored = state
                .depository
                .db
                .use_api_key(&hex::encode(digest(token)))
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            if let Some(key_name) = stored {
                return Ok(Self { key_name });
            }
        }
        // Valid keys always pass; a client sending wrong keys is slowed down.
        let client = state.limits.identity.key(parts);
        if let Some(wait) = state.limits.auth_failures.blocked(client) {
            return Err(ApiError::TooManyRequests { retry_after: wait });
        }
        state.limits.auth_failures.record(client);
        Err(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_listed_key_only() {
        let keys = ApiKeys::from_list("alpha, beta,,");
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts("alpha"));
        assert!(keys.accepts("beta"));
        assert!(!keys.accepts("gamma"));
        assert!(!keys.accepts(""));
        assert!(!keys.accepts("alph"));
        assert!(!ApiKeys::from_list("").accepts(""));
    }
}
