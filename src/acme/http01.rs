//! HTTP-01 answers: the key authorizations of pending challenges, served by the proxy's own port-80
//! listener at `/.well-known/acme-challenge/<token>` — no solver pods, no temporary Ingresses.
//!
//! The table is replaced whole (copy on write) when challenges come and go; the request path only loads
//! it. A token answers only for its challenge's domain, like cert-manager's acmesolver; any other request
//! under the ACME path falls through to normal routing (a user's own ACME client behind certgate still works).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::proxy::handler::ACME_CHALLENGE_PREFIX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingToken {
    /// The name being validated, lower-case, without a trailing dot.
    pub domain: String,
    pub key_authorization: String,
}

#[derive(Debug, Default)]
pub struct Http01Tokens {
    tokens: ArcSwap<HashMap<String, PendingToken>>,
}

impl Http01Tokens {
    /// The key authorization to answer with, for a normalised host and path.
    pub fn answer(&self, host: &str, path: &str) -> Option<String> {
        let token = path.strip_prefix(ACME_CHALLENGE_PREFIX)?;
        let tokens = self.tokens.load();
        let pending = tokens.get(token)?;
        (pending.domain == host).then(|| pending.key_authorization.clone())
    }

    pub fn insert(&self, token: &str, domain: &str, key_authorization: &str) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let pending = PendingToken {
            domain,
            key_authorization: key_authorization.to_owned(),
        };
        self.tokens.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(token.to_owned(), pending.clone());
            Arc::new(next)
        });
    }

    pub fn remove(&self, token: &str) {
        self.tokens.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(token);
            Arc::new(next)
        });
    }

    /// Replace every token at once (from the Challenge objects a watcher sees).
    pub fn replace_all(&self, tokens: HashMap<String, PendingToken>) {
        self.tokens.store(Arc::new(tokens));
    }

    pub fn len(&self) -> usize {
        self.tokens.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answers_for_its_domain_only() {
        let t = Http01Tokens::default();
        t.insert("tok", "Example.COM.", "tok.thumb");
        assert_eq!(
            t.answer("example.com", "/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            t.answer("other.com", "/.well-known/acme-challenge/tok"),
            None
        );
        assert_eq!(
            t.answer("example.com", "/.well-known/acme-challenge/other"),
            None
        );
        assert_eq!(t.answer("example.com", "/tok"), None);
    }

    #[test]
    fn removed_tokens_stop_answering() {
        let t = Http01Tokens::default();
        t.insert("a", "x.test", "a.k");
        t.insert("b", "x.test", "b.k");
        t.remove("a");
        assert_eq!(t.answer("x.test", "/.well-known/acme-challenge/a"), None);
        assert_eq!(
            t.answer("x.test", "/.well-known/acme-challenge/b")
                .as_deref(),
            Some("b.k")
        );
        assert_eq!(t.len(), 1);
    }
}
