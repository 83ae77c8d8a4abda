//! The query language: words (all must match), `"quoted phrases"`, and `prefix*`.
//! Queries are bounded in size and clause count before anything parses them further.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Most clauses (words and phrases) in a query.
pub const MAX_CLAUSES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clause {
    Word(String),
    Prefix(String),
    Phrase(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub text: String,
    pub clauses: Vec<Clause>,
}

/// Lowercase alphanumeric runs: the same split the index's tokenizer makes.
pub fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

impl Query {
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(Error::BadQuery(format!(
                "the query is {} bytes; at most {MAX_QUERY_BYTES} are allowed",
                text.len()
            )));
        }
        let mut clauses = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('"') {
                let (phrase, tail) = match after.find('"') {
                    Some(i) => (&after[..i], &after[i + 1..]),
                    None => (after, ""),
                };
                if tokens(phrase).next().is_some() {
                    clauses.push(Clause::Phrase(phrase.to_owned()));
                }
                rest = tail.trim_start();
                continue;
            }
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            rest = rest[end..].trim_start();
            let (w, prefix) = match word.strip_suffix('*') {
                Some(w) => (w, true),
                None => (word, false),
            };
            let w = w.trim_matches('"');
            if tokens(w).next().is_none() {
                continue;
            }
            clauses.push(if prefix {
                Clause::Prefix(w.to_owned())
            } else {
                Clause::Word(w.to_owned())
            });
        }
        if clauses.is_empty() {
            return Err(Error::BadQuery("the query has no searchable words".into()));
        }
        if clauses.len() > MAX_CLAUSES {
            return Err(Error::BadQuery(format!(
                "the query has {} words or phrases; at most {MAX_CLAUSES} are allowed",
                clauses.len()
            )));
        }
        Ok(Self {
            text: text.trim().to_owned(),
            clauses,
        })
    }

    /// Whole words of the query that keyword routing can look up (not prefixes).
    pub fn keywords(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.clauses {
            if let Clause::Word(w) | Clause::Phrase(w) = c {
                for t in tokens(w) {
                    if t.chars().count() >= MIN_KEYWORD_CHARS && !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// Whether a name/path could answer this query: each clause must appear among their
    /// words (a whole word, or the start of one). Used to drop results a broker or a peer
    /// made up.
    pub fn matches_name(&self, name: &str, path: &str) -> bool {
        let words: Vec<String> = tokens(name).chain(tokens(path)).collect();
        self.clauses.iter().all(|c| {
            let (s, prefix) = match c {
                Clause::Word(w) => (w, true),
                Clause::Prefix(w) => (w, true),
                Clause::Phrase(p) => (p, false),
            };
            tokens(s).all(|t| {
                words
                    .iter()
                    .any(|w| *w == t || (prefix && w.starts_with(&t)))
            })
        })
    }
}

/// Shortest word announced and looked up as a keyword in the DHT.
pub const MIN_KEYWORD_CHARS: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_phrases_prefixes() {
        let q = Query::parse(r#"  annual "brown fox" rep* "#).unwrap();
        assert_eq!(
            q.clauses,
            vec![
                Clause::Word("annual".into()),
                Clause::Phrase("brown fox".into()),
                Clause::Prefix("rep".into())
            ]
        );
        assert_eq!(q.keywords(), ["annual", "brown", "fox"]);
    }

    #[test]
    fn rejects_empty_long_and_wide_queries() {
        assert!(Query::parse("").is_err());
        assert!(Query::parse("  ** \"\" ").is_err());
        assert!(Query::parse(&"a".repeat(MAX_QUERY_BYTES + 1)).is_err());
        let wide = (0..MAX_CLAUSES + 1)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(Query::parse(&wide).is_err());
        // One character is a fine query.
        assert_eq!(Query::parse("a").unwrap().clauses.len(), 1);
        // An unterminated quote is a phrase to the end.
        assert_eq!(
            Query::parse("\"open end").unwrap().clauses,
            vec![Clause::Phrase("open end".into())]
        );
    }

    #[test]
    fn name_matching() {
        let q = Query::parse("report 2024").unwrap();
        assert!(q.matches_name("Annual Report 2024.pdf", ""));
        assert!(!q.matches_name("Annual Report.pdf", ""));
        assert!(q.matches_name("x.pdf", "reports/2024/x.pdf"));
    }
}
