//! What can go wrong with the store: the database, its records, and files beside it.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("metadata database {path} cannot be opened: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("metadata database {path} is damaged, and cannot be moved aside: {source}")]
    MoveAside {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata database {path} is already in use by another process")]
    InUse { path: String },
    #[error("metadata database {path} is damaged: {why}")]
    Damaged {
        path: String,
        #[source]
        why: Damage,
    },
    #[error("metadata database error: {0}")]
    Db(#[from] redb::Error),
    #[error("corrupt record in metadata database: {0}")]
    Corrupt(String),
    #[error("corrupt record in metadata database: {0}")]
    Record(#[from] serde_json::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a metadata database is damaged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    #[error(transparent)]
    Database(#[from] redb::DatabaseError),
    #[error("it failed its integrity check")]
    Integrity,
    /// The database library panicked reading it (its message).
    #[error("{0}")]
    Panicked(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(redb::Error::from(e))
            }
        }
    )*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// An I/O error at `path` as a store error.
pub fn io_err(path: impl std::fmt::Display, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_string(),
        source,
    }
}
