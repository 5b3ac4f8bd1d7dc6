//! The audit log's hash chain: each event's hash covers its fields and the previous hash,
//! so an edited, removed or reordered event breaks every link after it.

use sha2::{Digest, Sha256};

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: an API key's name, `student:<nickname>`, `system` or `cli`.
    pub actor: String,
    /// What, for example `upload.accepted`.
    pub action: String,
    /// On what, for example `student:ada` or `submission:12`.
    pub subject: String,
    /// Details as JSON text (never secrets).
    pub details: String,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// A new event, before it gets its place in the chain.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who.
    pub actor: String,
    /// What.
    pub action: &'static str,
    /// On what.
    pub subject: String,
    /// Details (never secrets).
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// A new entry.
    pub fn new(
        actor: impl Into<String>,
        action: &'static str,
        subject: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            actor: actor.into(),
            action,
            subject: subject.into(),
            details,
        }
    }
}

/// The hash of an event: SHA-256 over its fields, each length-prefixed so that no two
/// different events serialise alike.
pub fn event_hash(
    id: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let mut hasher = Sha256::new();
    for field in [
        &id.to_string() as &str,
        at,
        actor,
        action,
        subject,
        details,
        prev_hash,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The first event that does not verify (or the id that is missing).
    pub id: i64,
    /// Why.
    pub reason: String,
}

/// Checks a run of events that follows `prev_hash` and starts at id `first_id`.
pub fn verify_chain(
    events: &[AuditEvent],
    first_id: i64,
    mut prev_hash: String,
) -> Result<String, BrokenLink> {
    for (expected_id, event) in (first_id..).zip(events) {
        if event.id != expected_id {
            return Err(BrokenLink {
                id: expected_id,
                reason: format!("event {expected_id} is missing (next is {})", event.id),
            });
        }
        if event.prev_hash != prev_hash {
            return Err(BrokenLink {
                id: event.id,
                reason: "its previous-hash does not match the event before it".into(),
            });
        }
        let hash = event_hash(
            event.id,
            &event.at,
            &event.actor,
            &event.action,
            &event.subject,
            &event.details,
            &event.prev_hash,
        );
        if hash != event.hash {
            return Err(BrokenLink {
                id: event.id,
                reason: "its content does not match its hash (edited)".into(),
            });
        }
        prev_hash = hash;
    }
    Ok(prev_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|id| {
                let details = format!("{{\"n\":{id}}}");
                let hash = event_hash(id, "t", "system", "x", "s", &details, &prev);
                let event = AuditEvent {
                    id,
                    at: "t".into(),
                    actor: "system".into(),
                    action: "x".into(),
                    subject: "s".into(),
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                event
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(5);
        assert_eq!(
            verify_chain(&events, 1, GENESIS.into()),
            Ok(events[4].hash.clone())
        );
    }

    #[test]
    fn edits_removals_and_reorders_are_found() {
        let mut edited = chain(5);
        edited[2].details = "{\"n\":99}".into();
        assert_eq!(verify_chain(&edited, 1, GENESIS.into()).unwrap_err().id, 3);

        let mut removed = chain(5);
        removed.remove(3);
        assert_eq!(verify_chain(&removed, 1, GENESIS.into()).unwrap_err().id, 4);

        let mut rehashed = chain(5);
        rehashed[1].actor = "mallory".into();
        rehashed[1].hash = event_hash(
            2,
            "t",
            "mallory",
            "x",
            "s",
            &rehashed[1].details,
            &rehashed[1].prev_hash,
        );
        let broken = verify_chain(&rehashed, 1, GENESIS.into()).unwrap_err();
        assert_eq!(broken.id, 3, "rehashing one event breaks the next link");
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        assert_ne!(
            event_hash(1, "a", "bc", "d", "e", "f", GENESIS),
            event_hash(1, "ab", "c", "d", "e", "f", GENESIS)
        );
    }
}
