//! The one conversion from what the queries fail with to the core's
//! [`StoreError`], made once at the [`Store`](warden_core::Store) boundary.
//! Queries use `?` on `sqlx` results and return a [`StoreError`] of their
//! own where they know better (a named conflict, a stale version).

use warden_core::StoreError;

/// A query's failure: the database's, or one the query decided.
#[derive(Debug)]
pub(crate) enum Error {
    /// The database or the driver failed.
    Sql(sqlx::Error),
    /// The query's own verdict.
    Store(StoreError),
}

/// What the store's modules return.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Sql(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl Error {
    /// A unique constraint refused the write.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Sql(sqlx::Error::Database(db)) if db.is_unique_violation())
    }

    /// A foreign key refused the write (the row refers to something missing,
    /// or something still refers to it).
    pub(crate) fn is_foreign_key_violation(&self) -> bool {
        matches!(self, Error::Sql(sqlx::Error::Database(db)) if db.is_foreign_key_violation())
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Sql(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            Error::Sql(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                StoreError::InUse(db.message().to_owned())
            }
            Error::Sql(e) => StoreError::Backend(e.to_string()),
        }
    }
}

/// A stored row that reads back as a record of the core, or fails naming
/// the record (never a default for what does not parse).
pub(crate) trait Record {
    /// The core's record.
    type Out;
    /// Parse the row.
    fn into_record(self) -> Result<Self::Out>;
}

/// The record of a row that may be missing.
pub(crate) fn optional<T: Record>(row: Option<T>) -> Result<Option<T::Out>> {
    row.map(Record::into_record).transpose()
}

/// The records of rows.
pub(crate) fn all<T: Record>(rows: Vec<T>) -> Result<Vec<T::Out>> {
    rows.into_iter().map(Record::into_record).collect()
}

/// `StoreError::Corrupt` for `record`.
pub(crate) fn corrupt(record: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Store(StoreError::Corrupt {
        record: record.into(),
        reason: reason.into(),
    })
}

/// A JSON column of `record`, parsed.
pub(crate) fn json<T: serde::de::DeserializeOwned>(record: &str, column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(record, format!("{column}: {e}")))
}

/// A value as JSON text for a column.
pub(crate) fn json_text<T: serde::Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| Error::Store(StoreError::Backend(format!("cannot write {what} as JSON: {e}"))))
}
