//! Parsed GraphQL documents, kept by their text.
//!
//! Clients send the same few documents over and over (a page query with other variables, the
//! same mutation for every event). Parsing one costs far more than copying it: the parser
//! (a PEG grammar) took about 8% of the instructions of a page of 50 events. The cache holds the
//! parsed form of recent documents, so that a repeated document is copied instead of parsed.
//! It is bounded in entries and in the size of the documents it takes; when full, an entry is
//! dropped to make room, so that a client sending endless distinct documents gains nothing and
//! costs only the copy.

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::types::ExecutableDocument;

/// How many documents are kept.
const ENTRIES: usize = 128;

/// The longest document kept, in bytes; longer ones are parsed each time.
const LONGEST: usize = 4096;

/// Recently parsed documents (see the module documentation).
#[derive(Default)]
pub struct Documents {
    parsed: Mutex<foldhash::HashMap<Box<str>, Arc<ExecutableDocument>>>,
}

impl Documents {
    /// Gives `request` the parsed form of its document when it is kept; otherwise parses it and
    /// keeps it when it parses. Returns nothing: a document that does not parse is reported by
    /// the execution, as before.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > LONGEST {
            return;
        }
        let kept = self.lock().get(request.query.as_str()).cloned();
        if let Some(document) = kept {
            request.set_parsed_query(ExecutableDocument::clone(&document));
            return;
        }
        let Ok(document) = request.parsed_query() else {
            return;
        };
        let document = Arc::new(document.clone());
        let query = request.query.as_str().into();
        let mut parsed = self.lock();
        if parsed.len() >= ENTRIES
            && let Some(victim) = parsed.keys().next().cloned()
        {
            parsed.remove(&victim);
        }
        parsed.insert(query, document);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<Box<str>, Arc<ExecutableDocument>>> {
        // The map stays consistent whatever panicked while holding it.
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many documents are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(documents: &Documents, query: &str) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        documents.prepare(&mut request);
        request
    }

    #[test]
    fn a_repeated_document_is_given_parsed_and_the_same() {
        let documents = Documents::default();
        let query = "query Page($after: String) { auditEvents(first: 5, after: $after) { edges { cursor } } }";
        let mut first = parsed(&documents, query);
        let mut second = parsed(&documents, query);
        assert_eq!(documents.len(), 1);
        let first = format!("{:?}", first.parsed_query().unwrap());
        let second = format!("{:?}", second.parsed_query().unwrap());
        assert_eq!(first, second);
    }

    #[test]
    fn documents_that_do_not_parse_or_are_long_are_not_kept_and_the_cache_is_bounded() {
        let documents = Documents::default();
        let mut broken = parsed(&documents, "{ auditEvents(");
        assert!(broken.parsed_query().is_err());
        let long = format!("{{ {} }}", "__typename ".repeat(LONGEST / 10));
        let mut long = parsed(&documents, &long);
        assert!(long.parsed_query().is_ok());
        assert_eq!(documents.len(), 0);
        for n in 0..ENTRIES * 2 {
            parsed(&documents, &format!("{{ a{n}: __typename }}"));
        }
        assert_eq!(documents.len(), ENTRIES);
        let mut last = parsed(&documents, &format!("{{ a{}: __typename }}", ENTRIES * 2 - 1));
        assert!(last.parsed_query().is_ok());
    }
}
