//! Errors as one line a user reads: the error and each cause under it, joined by ": ". A
//! cause whose text the line already holds (a message that quotes its source) is said once.

/// `e` and its chain of sources on one line.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        next = err.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read the journal")]
        Bare(#[source] std::io::Error),
        #[error("cannot read the journal: {0}")]
        Quoting(#[source] std::io::Error),
    }

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn each_cause_is_said_once() {
        assert_eq!(
            one_line(&Outer::Bare(io())),
            "cannot read the journal: no such file"
        );
        assert_eq!(
            one_line(&Outer::Quoting(io())),
            "cannot read the journal: no such file"
        );
    }
}
