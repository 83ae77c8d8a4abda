//! Full-text catalogue index (tantivy): the local index of what a node shares, and the
//! broker's directory of what registered peers share. Same schema and query language for
//! both; the broker keeps its index in memory, a node keeps its own on disk.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, Occur, PhraseQuery, Query as TQuery, RegexQuery, TermQuery,
};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::tokenizer::TokenStream;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Term};

use crate::Error;
use crate::protocol::Entry;
use crate::query::{Clause, Query};

/// Memory budget of the index writer.
const WRITER_HEAP: usize = 50_000_000;

#[derive(Clone, Copy)]
struct Fields {
    peer: Field,
    id: Field,
    key: Field,
    name: Field,
    path: Field,
    body: Field,
    size: Field,
    kind: Field,
    name_key: Field,
    revision: Field,
    /// The group an entry is visible to; empty for public entries.
    scope: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        peer: b.add_text_field("peer", STRING | STORED),
        id: b.add_text_field("id", STRING | STORED),
        key: b.add_text_field("key", STRING),
        name: b.add_text_field("name", TEXT | STORED),
        path: b.add_text_field("path", TEXT | STORED),
        body: b.add_text_field("body", TEXT),
        size: b.add_u64_field("size", STORED | INDEXED),
        kind: b.add_text_field("kind", STRING | STORED),
        name_key: b.add_text_field("name_key", STRING | STORED),
        revision: b.add_u64_field("revision", STORED),
        scope: b.add_text_field("scope", STRING | STORED),
    };
    (b.build(), f)
}

/// One indexed item and who holds it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: Entry,
    /// Peer that registered it (empty for the local index).
    pub peer: String,
    pub score: f32,
}

/// A catalogue index. Writes are buffered until [`CatalogIndex::commit`]; searches read
/// the last commit and never wait for the writer.
pub struct CatalogIndex {
    index: Index,
    writer: std::sync::Mutex<IndexWriter>,
    reader: IndexReader,
    f: Fields,
}

impl std::fmt::Debug for CatalogIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogIndex").finish_non_exhaustive()
    }
}

impl CatalogIndex {
    /// Opens (or creates) an index in `dir`; `None` keeps it in memory.
    pub fn open(dir: Option<&Path>) -> Result<Self, Error> {
        let (schema, f) = schema();
        let index = match dir {
            Some(d) => {
                let io = |source| Error::Io {
                    path: d.to_owned(),
                    source,
                };
                std::fs::create_dir_all(d).map_err(io)?;
                let mmap = || {
                    tantivy::directory::MmapDirectory::open(d)
                        .map_err(|e| Error::Index(tantivy::TantivyError::from(e)))
                };
                match Index::open_or_create(mmap()?, schema.clone()) {
                    Ok(i) => i,
                    // An index of an earlier schema: it is rebuilt from the catalogue.
                    Err(tantivy::TantivyError::SchemaError(why)) => {
                        tracing::info!(%why, "search index of an earlier format; rebuilding it");
                        std::fs::remove_dir_all(d).map_err(io)?;
                        std::fs::create_dir_all(d).map_err(io)?;
                        Index::open_or_create(mmap()?, schema)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => Index::create_in_ram(schema),
        };
        let writer = index.writer(WRITER_HEAP)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            writer: std::sync::Mutex::new(writer),
            reader,
            f,
        })
    }

    /// The writer; a poisoned lock (a writer panicked) is an error.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, Error> {
        Ok(kith_core::sync::lock(&self.writer)?)
    }

    fn key(peer: &str, scope: &str, id: &str) -> String {
        format!("{peer}\u{0}{scope}\u{0}{id}")
    }

    /// Adds (or replaces) a public entry held by `peer`, with the text of the file if known.
    pub fn add(&self, peer: &str, entry: &Entry, body: Option<&str>) -> Result<(), Error> {
        self.add_scoped(peer, "", entry, body)
    }

    /// Adds (or replaces) an entry visible in `scope` (a group; empty: public).
    pub fn add_scoped(
        &self,
        peer: &str,
        scope: &str,
        entry: &Entry,
        body: Option<&str>,
    ) -> Result<(), Error> {
        let f = self.f;
        let key = Self::key(peer, scope, &entry.id);
        let writer = self.writer()?;
        writer.delete_term(Term::from_field_text(f.key, &key));
        let mut doc = TantivyDocument::default();
        doc.add_text(f.peer, peer);
        doc.add_text(f.id, &entry.id);
        doc.add_text(f.key, &key);
        doc.add_text(f.scope, scope);
        doc.add_text(f.name, &entry.name);
        doc.add_text(f.path, &entry.path);
        if let Some(b) = body {
            doc.add_text(f.body, b);
        }
        doc.add_u64(f.size, entry.size);
        doc.add_text(f.kind, &entry.kind);
        if let Some(n) = &entry.name_key {
            doc.add_text(f.name_key, n);
        }
        if let Some(r) = entry.revision {
            doc.add_u64(f.revision, r);
        }
        writer.add_document(doc)?;
        Ok(())
    }

    /// Removes one public entry of `peer`.
    pub fn remove(&self, peer: &str, id: &str) -> Result<(), Error> {
        self.remove_scoped(peer, "", id)
    }

    /// Removes one entry of `peer` in `scope`.
    pub fn remove_scoped(&self, peer: &str, scope: &str, id: &str) -> Result<(), Error> {
        let key = Self::key(peer, scope, id);
        self.writer()?
            .delete_term(Term::from_field_text(self.f.key, &key));
        Ok(())
    }

    /// Removes every entry of `peer`.
    pub fn remove_peer(&self, peer: &str) -> Result<(), Error> {
        self.writer()?
            .delete_term(Term::from_field_text(self.f.peer, peer));
        Ok(())
    }

    /// Removes everything.
    pub fn clear(&self) -> Result<(), Error> {
        self.writer()?.delete_all_documents()?;
        Ok(())
    }

    /// Makes buffered writes durable (on disk) and visible to searches.
    pub fn commit(&self) -> Result<(), Error> {
        self.writer()?.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Number of entries visible to searches.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry of `peer`, with its scope (the local index uses this to find what
    /// changed).
    pub fn entries_of(&self, peer: &str) -> Result<Vec<(String, Entry)>, Error> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.f.peer, peer),
            IndexRecordOption::Basic,
        );
        let n = searcher.num_docs() as usize;
        let top = searcher.search(&q, &TopDocs::with_limit(n.max(1)).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (_, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let scope = doc
                .get_first(self.f.scope)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            out.push((scope, self.entry_of(&doc).0));
        }
        Ok(out)
    }

    fn entry_of(&self, doc: &TantivyDocument) -> (Entry, String) {
        let f = self.f;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let entry = Entry {
            id: text(f.id),
            name: text(f.name),
            path: text(f.path),
            size: doc.get_first(f.size).and_then(|v| v.as_u64()).unwrap_or(0),
            kind: text(f.kind),
            name_key: doc
                .get_first(f.name_key)
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            revision: doc.get_first(f.revision).and_then(|v| v.as_u64()),
        };
        (entry, text(f.peer))
    }

    fn tokens(&self, field: Field, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut analyzer) = self.index.tokenizer_for_field(field) {
            let mut stream = analyzer.token_stream(text);
            while stream.advance() {
                out.push(stream.token().text.clone());
            }
        }
        out
    }

    /// The tantivy query for a parsed query: every clause must match in the name, the path
    /// or the text (name counts most).
    fn build(&self, q: &Query, scope: &str) -> Result<Box<dyn TQuery>, Error> {
        let f = self.f;
        let weighted = [(f.name, 3.0f32), (f.path, 1.5), (f.body, 1.0)];
        let mut must: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
        for clause in &q.clauses {
            let mut any: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
            match clause {
                Clause::Word(w) | Clause::Prefix(w) => {
                    let prefix = matches!(clause, Clause::Prefix(_));
                    // A word may split into several tokens ("v1.2"): all must be there.
                    let toks = self.tokens(f.name, w);
                    if toks.is_empty() {
                        continue;
                    }
                    for (field, boost) in weighted {
                        let mut all: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
                        let last = toks.len() - 1;
                        for (i, t) in toks.iter().enumerate() {
                            let term = Term::from_field_text(field, t);
                            let exact: Box<dyn TQuery> =
                                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                            // An explicit `word*` matches the start of words anywhere, the
                            // text included, as a plain word does; any word of 3+ characters
                            // is also a prefix of words in names and paths (in the text that
                            // would expand to too many terms).
                            let implicit = field != f.body && t.chars().count() >= 3;
                            let wants_prefix = i == last && (prefix || implicit);
                            let part: Box<dyn TQuery> = if wants_prefix {
                                let pattern = format!("{}.*", regex_escape(t));
                                let rx = RegexQuery::from_pattern(&pattern, field)?;
                                Box::new(BooleanQuery::new(vec![
                                    (Occur::Should, Box::new(BoostQuery::new(exact, 2.0))),
                                    (Occur::Should, Box::new(rx)),
                                ]))
                            } else {
                                exact
                            };
                            all.push((Occur::Must, part));
                        }
                        any.push((
                            Occur::Should,
                            Box::new(BoostQuery::new(Box::new(BooleanQuery::new(all)), boost)),
                        ));
                    }
                }
                Clause::Phrase(p) => {
                    for (field, boost) in weighted {
                        let toks = self.tokens(field, p);
                        let inner: Box<dyn TQuery> = match toks.len() {
                            0 => continue,
                            1 => Box::new(TermQuery::new(
                                Term::from_field_text(field, &toks[0]),
                                IndexRecordOption::WithFreqs,
                            )),
                            _ => Box::new(PhraseQuery::new(
                                toks.iter()
                                    .map(|t| Term::from_field_text(field, t))
                                    .collect(),
                            )),
                        };
                        any.push((Occur::Should, Box::new(BoostQuery::new(inner, boost))));
                    }
                }
            }
            if !any.is_empty() {
                must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
            }
        }
        if must.is_empty() {
            return Err(Error::BadQuery("the query has no searchable words".into()));
        }
        must.push((
            Occur::Must,
            Box::new(TermQuery::new(
                Term::from_field_text(self.f.scope, scope),
                IndexRecordOption::Basic,
            )),
        ));
        Ok(Box::new(BooleanQuery::new(must)))
    }

    /// The best `limit` public matches of `q`.
    pub fn search(&self, q: &Query, limit: usize) -> Result<Vec<Hit>, Error> {
        self.search_where(q, limit, limit, |_| true)
    }

    /// The best `limit` matches of `q` visible in `scope` (a group).
    pub fn search_scope(&self, q: &Query, limit: usize, scope: &str) -> Result<Vec<Hit>, Error> {
        self.search_in(q, limit, limit, scope, |_| true)
    }

    /// The best `limit` matches of `q` whose peer passes `keep`, looking at no more than
    /// `scan` matches (stored fields are read only for the matches looked at).
    pub fn search_where(
        &self,
        q: &Query,
        limit: usize,
        scan: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<Hit>, Error> {
        self.search_in(q, limit, scan, "", keep)
    }

    fn search_in(
        &self,
        q: &Query,
        limit: usize,
        scan: usize,
        scope: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<Hit>, Error> {
        let tq = self.build(q, scope)?;
        let searcher = self.reader.searcher();
        let top = searcher.search(&tq, &TopDocs::with_limit(scan.max(1)).order_by_score())?;
        let mut out = Vec::with_capacity(limit.min(top.len()));
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let (entry, peer) = self.entry_of(&doc);
            if !keep(&peer) {
                continue;
            }
            out.push(Hit { entry, peer, score });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else {
            out.push('\\');
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_that_cannot_be_created_keeps_its_cause() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, b"x")?;
        let Err(e) = CatalogIndex::open(Some(&file.join("index"))) else {
            panic!("an index under a file opened");
        };
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert!(cause.is_some(), "no source in {e}");
        assert!(e.to_string().contains("not-a-folder"), "{e}");
        Ok(())
    }

    fn entry(id: &str, name: &str, path: &str) -> Entry {
        Entry {
            id: id.into(),
            name: name.into(),
            path: path.into(),
            size: 10,
            kind: "file".into(),
            name_key: None,
            revision: None,
        }
    }

    fn ids(ix: &CatalogIndex, q: &str) -> Vec<String> {
        let q = Query::parse(q).unwrap();
        ix.search(&q, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.entry.id)
            .collect()
    }

    #[test]
    fn words_phrases_prefixes_and_text() {
        let ix = CatalogIndex::open(None).unwrap();
        ix.add(
            "",
            &entry("a", "annual report 2024.pdf", "docs/annual report 2024.pdf"),
            None,
        )
        .unwrap();
        ix.add(
            "",
            &entry("b", "notes.txt", "notes.txt"),
            Some("the quick brown fox jumps"),
        )
        .unwrap();
        ix.add(
            "",
            &entry("c", "report card.txt", "school/report card.txt"),
            None,
        )
        .unwrap();
        ix.commit().unwrap();
        assert_eq!(ix.len(), 3);
        let mut r = ids(&ix, "report");
        r.sort();
        assert_eq!(r, ["a", "c"]);
        assert_eq!(ids(&ix, "annual report"), ["a"]);
        assert_eq!(ids(&ix, "\"brown fox\""), ["b"]);
        assert!(ids(&ix, "\"fox brown\"").is_empty());
        assert_eq!(ids(&ix, "ann*"), ["a"]);
        assert_eq!(ids(&ix, "schoo"), ["c"]);
        assert_eq!(ids(&ix, "quick"), ["b"]);
        assert_eq!(ids(&ix, "qui*"), ["b"], "a prefix matches the text too");
        assert_eq!(
            ids(&ix, "qui"),
            Vec::<String>::new(),
            "a bare word does not"
        );
        // Name matches rank above path-only matches.
        ix.add("", &entry("d", "x.bin", "report/x.bin"), None)
            .unwrap();
        ix.commit().unwrap();
        let r = ids(&ix, "report");
        assert_eq!(r.last().map(String::as_str), Some("d"));
    }

    #[test]
    fn remove_and_peers() {
        let ix = CatalogIndex::open(None).unwrap();
        ix.add("p1", &entry("a", "song.mp3", "song.mp3"), None)
            .unwrap();
        ix.add("p2", &entry("a", "song.mp3", "song.mp3"), None)
            .unwrap();
        ix.add("p2", &entry("b", "song two.mp3", "song two.mp3"), None)
            .unwrap();
        ix.commit().unwrap();
        assert_eq!(ids(&ix, "song").len(), 3);
        ix.remove("p2", "a").unwrap();
        ix.commit().unwrap();
        assert_eq!(ids(&ix, "song").len(), 2);
        ix.remove_peer("p2").unwrap();
        ix.commit().unwrap();
        let hits = ix.search(&Query::parse("song").unwrap(), 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].peer, "p1");
        assert_eq!(ix.entries_of("p1").unwrap()[0].1.id, "a");
        // An entry of a group is found only in that group.
        ix.add_scoped(
            "",
            "grp-1",
            &entry("g", "secret plan.txt", "secret plan.txt"),
            None,
        )
        .unwrap();
        ix.commit().unwrap();
        assert!(ids(&ix, "secret").is_empty());
        let q = Query::parse("secret").unwrap();
        assert_eq!(ix.search_scope(&q, 10, "grp-1").unwrap()[0].entry.id, "g");
        assert!(ix.search_scope(&q, 10, "grp-2").unwrap().is_empty());
    }

    #[test]
    fn persists_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ix = CatalogIndex::open(Some(dir.path())).unwrap();
            ix.add("", &entry("a", "kept.txt", "kept.txt"), None)
                .unwrap();
            ix.commit().unwrap();
        }
        let ix = CatalogIndex::open(Some(dir.path())).unwrap();
        assert_eq!(ids(&ix, "kept"), ["a"]);
    }
}
