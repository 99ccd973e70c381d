//! The SQLite database: the single source of truth for inventory, images and rollouts.
//!
//! Invariant: only this module contains SQL.

pub(crate) mod access;
mod configs;
mod devices;
mod golden;
mod images;
mod notifications;
pub(crate) mod rollouts;
mod sync;

pub use access::{AuditRecord, TokenRecord};
pub(crate) use devices::{DeviceFilter, Upserted};
pub(crate) use notifications::NewDelivery;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The data directory's file system is full (or failing): the change was not saved.
    #[error("the change was not saved: {0}")]
    Storage(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match storage_error(&e) {
            Some(why) => StoreError::Storage(why),
            None => StoreError::Database(e),
        }
    }
}

impl StoreError {
    /// Maps a UNIQUE constraint violation to `Conflict` with a readable message.
    pub(crate) fn from_unique(e: sqlx::Error, what: impl Into<String>) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(what.into());
        }
        StoreError::Database(e)
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
    /// The file system the database lives on, for its free space.
    dir: PathBuf,
    /// Why the last write failed for lack of space, until a write succeeds again.
    write_failure: Arc<Mutex<Option<String>>>,
}

/// Below this much free space in the data directory (or 5% of a smaller file system), the
/// service says it is degraded.
const LOW_SPACE: u64 = 8 * 1024 * 1024;

/// Whether a database error means the disk is full or failing (SQLite's SQLITE_FULL and
/// SQLITE_IOERR families), not a fault of the request.
fn storage_error(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code: i64 = db.code()?.parse().ok()?;
    match code & 0xff {
        13 => Some("the data directory's file system is full".into()),
        10 => Some(format!(
            "the data directory cannot be written ({})",
            db.message()
        )),
        _ => None,
    }
}

/// A write transaction on a pooled connection. SQLite may or may not have rolled back a
/// transaction whose COMMIT failed (a full disk says SQLITE_FULL at COMMIT), so a connection
/// whose transaction did not commit is closed, never handed back to the pool in doubt.
pub(crate) struct Tx {
    conn: Option<PoolConnection<Sqlite>>,
    db: Db,
}

impl Tx {
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Err(StoreError::Storage(
                "the transaction was already closed".into(),
            ));
        };
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => {
                self.db.wrote(Ok(()));
                Ok(())
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                let _ = conn.close().await;
                Err(self.db.failed(e))
            }
        }
    }
}

impl Tx {
    /// Undo the transaction and hand the connection back (a dry run's end).
    pub(crate) async fn rollback(mut self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
            let _ = conn.close().await;
            return Err(StoreError::Database(e));
        }
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not committed (an error on the way): the connection closes with its transaction,
            // which SQLite then rolls back. It is not reused.
            drop(conn.detach());
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a Tx is used only before commit"))
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a Tx is used only before commit"))
    }
}

impl Db {
    /// Open (creating if needed) the database file and apply pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            dir: path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            write_failure: Arc::new(Mutex::new(None)),
        })
    }

    /// Begin a write transaction (`BEGIN IMMEDIATE`: the write lock is taken at once, so two
    /// writers never deadlock upgrading a read lock).
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        let mut conn = self.pool.acquire().await?;
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            return Err(self.failed(e));
        }
        Ok(Tx {
            conn: Some(conn),
            db: self.clone(),
        })
    }

    /// Note how a write ended: a storage failure marks the store degraded until a write works.
    fn wrote(&self, result: Result<(), String>) {
        let mut w = self.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        *w = result.err();
    }

    /// A failed write: a storage failure is remembered (and named), anything else passes.
    pub(crate) fn failed(&self, e: sqlx::Error) -> StoreError {
        match storage_error(&e) {
            Some(why) => {
                tracing::error!(error = %e, "{why}: a write was not saved");
                self.wrote(Err(why.clone()));
                StoreError::Storage(why)
            }
            None => StoreError::Database(e),
        }
    }

    /// Whether writes fail for lack of space now (cheap: what the last write said).
    pub fn writes_failing(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the store cannot take writes now, if it cannot: the file system's free space, and
    /// after a failed write, whether a write works again (a small transaction proves it).
    pub async fn storage_problem(&self) -> Option<String> {
        #[cfg(target_os = "linux")]
        if let Ok(st) = rustix::fs::statvfs(&self.dir) {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let size = st.f_blocks.saturating_mul(st.f_frsize);
            if free < LOW_SPACE.min(size / 20) {
                return Some(format!(
                    "the data directory's file system is full ({} KiB free)",
                    free / 1024
                ));
            }
        }
        self.writes_failing()?;
        let probe = async {
            let mut tx = self.begin().await?;
            sqlx::query("UPDATE write_probe SET at = ? WHERE id = 1")
                .bind(now_text())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.failed(e))?;
            tx.commit().await
        };
        probe.await.err().map(|e| e.to_string())
    }

    /// The data directory (where the database file is).
    pub(crate) fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await
    }
}

pub(crate) fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}
