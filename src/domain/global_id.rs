//! Global object ids (Relay's object identification): one opaque, stable id per object a client
//! may refetch with `node(id:)`. An id names the object's type and its key, URL-safe base64 encoded
//! so that clients treat it as opaque; an event's id carries its date, so that refetching it reads
//! one partition.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDate;
use uuid::Uuid;

use super::EventKey;

/// What a global id names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GlobalId {
    /// An audit event, by its key.
    AuditEvent(EventKey),
    /// The legal hold on a correlation.
    LegalHold(String),
    /// A retention run, by its id.
    RetentionRun(Uuid),
}

impl GlobalId {
    /// The opaque id.
    pub fn encode(&self) -> String {
        let plain = match self {
            GlobalId::AuditEvent(key) => format!("AuditEvent:{}:{}", key.id, key.date.format("%Y-%m-%d")),
            GlobalId::LegalHold(correlation) => format!("LegalHold:{correlation}"),
            GlobalId::RetentionRun(id) => format!("RetentionRun:{id}"),
        };
        URL_SAFE_NO_PAD.encode(plain)
    }

    /// What an opaque id names; an error saying why for anything this server did not issue.
    pub fn decode(id: &str) -> Result<Self, String> {
        let shown: String = id.chars().take(64).collect();
        let more = if shown.len() < id.len() { "…" } else { "" };
        let wrong = || format!("`{shown}{more}` is not an id this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(id.trim()).map_err(|_| wrong())?;
        let plain = String::from_utf8(bytes).map_err(|_| wrong())?;
        let (kind, rest) = plain.split_once(':').ok_or_else(wrong)?;
        match kind {
            "AuditEvent" => {
                let (event, date) = rest.split_once(':').ok_or_else(wrong)?;
                Ok(GlobalId::AuditEvent(EventKey {
                    id: event.parse().map_err(|_| wrong())?,
                    date: NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| wrong())?,
                }))
            }
            "LegalHold" if !rest.is_empty() => Ok(GlobalId::LegalHold(rest.to_string())),
            "RetentionRun" => Ok(GlobalId::RetentionRun(rest.parse().map_err(|_| wrong())?)),
            _ => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_as_what_they_name() {
        let key = EventKey {
            id: Uuid::now_v7(),
            date: NaiveDate::from_ymd_opt(2026, 12, 6).unwrap(),
        };
        for id in [
            GlobalId::AuditEvent(key),
            GlobalId::LegalHold("rr:2026/001 ü".into()),
            GlobalId::RetentionRun(Uuid::now_v7()),
        ] {
            let text = id.encode();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(GlobalId::decode(&text), Ok(id));
        }
    }

    #[test]
    fn ids_not_issued_here_are_refused() {
        let forged = |plain: &str| URL_SAFE_NO_PAD.encode(plain);
        for id in [
            "".to_string(),
            "!!".to_string(),
            forged("AuditEvent:not-a-uuid:2026-12-06"),
            forged(&format!("AuditEvent:{}", Uuid::now_v7())),
            forged(&format!("AuditEvent:{}:2026-13-01", Uuid::now_v7())),
            forged("LegalHold:"),
            forged("Query:x"),
            Uuid::now_v7().to_string(),
        ] {
            let error = GlobalId::decode(&id).unwrap_err();
            assert!(error.contains("is not an id this server issued"), "{id}: {error}");
        }
    }
}
