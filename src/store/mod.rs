//! The database (SQLite, the embedded default, or PostgreSQL): the single source of truth for
//! inventory, images and rollouts.
//!
//! Invariant: only this module contains SQL.

pub(crate) mod access;
mod configs;
pub mod copy;
mod devices;
mod golden;
mod images;
pub mod leases;
mod notifications;
pub(crate) mod rollouts;
pub(crate) mod runners;
mod sync;

pub use access::{AuditRecord, TokenRecord};
pub(crate) use devices::{DeviceFilter, Upserted};
pub(crate) use notifications::NewDelivery;
pub use rollouts::CatchUp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};

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
    #[error("{0}")]
    Url(String),
    /// The rollout's lease was taken over by another node since this one claimed it: this
    /// node may no longer write for it.
    #[error("{0}")]
    Fenced(String),
    /// A site agent's call to the service was not carried out (or its answer was lost).
    #[error("the service did not take it: {0}")]
    Remote(String),
    /// A change that needs a rollout no node drives found its lease held (by this node).
    #[error("the rollout's task still runs on node {0}")]
    Leased(String),
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

/// Which database server holds the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One file in the data directory: the embedded default, one `serve` process.
    Sqlite,
    /// A PostgreSQL server, which several fleetup processes can share.
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the database is: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/NAME`.
/// Shown (`Display`, `Debug`) without its password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// The embedded default: `fleetup.db` in the data directory.
    pub fn in_data_dir(dir: &Path) -> Self {
        DatabaseUrl::Sqlite(dir.join("fleetup.db"))
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(
                    "a sqlite:// URL needs a file path, e.g. sqlite:///var/lib/fleetup/fleetup.db"
                        .into(),
                );
            }
            if path.contains('?') || path.contains('#') {
                return Err(format!(
                    "the SQLite path {path:?} may not hold '?' or '#'; fleetup sets the connection options itself"
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = reqwest::Url::parse(s)
                .map_err(|e| format!("{}: not a valid URL: {e}", redact(s)))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("{}: the URL names no host", redact(s)));
            }
            if url.path().trim_start_matches('/').is_empty() {
                return Err(format!(
                    "{}: the URL names no database (postgres://USER@HOST:PORT/DATABASE)",
                    redact(s)
                ));
            }
            return Ok(DatabaseUrl::Postgres(s.to_string()));
        }
        Err(format!(
            "{}: the database URL must start with sqlite:// or postgres://",
            redact(s)
        ))
    }
}

/// A URL with its password replaced by `***`, for logs and errors.
fn redact(s: &str) -> String {
    match reqwest::Url::parse(s) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => match s.split_once('@') {
            Some((_, rest)) => format!("***@{rest}"),
            None => s.to_string(),
        },
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// Where write transactions run. SQLite: a pool of one connection of its own, so the
    /// writes always meet a page cache that only they changed (a commit empties every other
    /// connection's cache, and the next writer on another connection would read the pages it
    /// changes again). PostgreSQL: the same pool as the reads.
    write_pool: AnyPool,
    backend: Backend,
    /// The data directory (configuration backups live there).
    dir: PathBuf,
    /// The file system the SQLite file lives on, for its free space (none for a server).
    file_dir: Option<PathBuf>,
    /// Why the last write failed for lack of space, until a write succeeds again.
    write_failure: Arc<Mutex<Option<String>>>,
    /// This process's writers take turns here, in order, before they take a connection.
    /// SQLite: without it every writer but one meets SQLITE_BUSY, and SQLite's busy handler
    /// sleeps 1, 2, 5, 10 … 100 ms between tries: hundreds of jobs writing at once then commit
    /// a few hundred transactions a second, most of the time asleep. Other processes on the
    /// file still meet the busy handler.
    /// PostgreSQL: writes are serialized by an advisory lock anyway; without the turn, every
    /// writer waiting for that lock holds a pooled connection, and the API's reads wait for a
    /// connection behind them. The turn is given back once the lock is held.
    writers: Arc<tokio::sync::Mutex<()>>,
}

/// How long a writer waits for its turn: on SQLite as long as `busy_timeout` lets it wait
/// for another process's lock.
const WRITER_TURN_WAIT: Duration = Duration::from_secs(10);

/// A write a site agent sent ahead of its job's next one
/// (`crate::rollout::job_store::JobOp::may_wait`): made in the transaction of that next write,
/// after its fence's check, so that both are kept, or neither.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PreWrite {
    StartAttempt {
        rollout: String,
        device: String,
    },
    Origin {
        rollout: String,
        device: String,
        version: Option<String>,
        image: Option<String>,
    },
    Facts {
        device: String,
        facts: crate::inventory::Facts,
    },
    HostKey {
        device: String,
        key: String,
    },
}

impl PreWrite {
    async fn write(&self, tx: &mut Tx) -> Result<(), StoreError> {
        match self {
            PreWrite::StartAttempt { rollout, device } => {
                rollouts::start_job_attempt_in(tx, rollout, device).await
            }
            PreWrite::Origin {
                rollout,
                device,
                version,
                image,
            } => {
                rollouts::set_job_origin_in(
                    tx,
                    rollout,
                    device,
                    version.as_deref(),
                    image.as_deref(),
                )
                .await
            }
            // A device taken out of the inventory meanwhile keeps no facts and no key: what
            // it held back does not stop the job's next write.
            PreWrite::Facts { device, facts } => {
                gone_is_fine(device, devices::set_facts_in(tx, device, facts).await)
            }
            PreWrite::HostKey { device, key } => gone_is_fine(
                device,
                devices::set_host_key_in(tx, device, Some(key)).await,
            ),
        }
    }
}

fn gone_is_fine(device: &str, written: Result<(), StoreError>) -> Result<(), StoreError> {
    match written {
        Err(StoreError::NotFound) => {
            tracing::warn!(
                device,
                "no longer in the inventory: its facts and host key are not kept"
            );
            Ok(())
        }
        w => w,
    }
}

tokio::task_local! {
    /// The writes this task holds back for its next write transaction ([`Db::begin`] makes
    /// them, once).
    pub(crate) static PRE_WRITES: std::cell::RefCell<Vec<PreWrite>>;
}

/// The writes held back on this task, taken: the first transaction begun makes them.
pub(crate) fn take_pre_writes() -> Vec<PreWrite> {
    PRE_WRITES
        .try_with(|w| std::mem::take(&mut *w.borrow_mut()))
        .unwrap_or_default()
}

/// The key of the transaction-scoped advisory lock every write transaction on PostgreSQL
/// takes first ([`Db::begin`]).
const PG_WRITE_LOCK: i64 = 7466346977;

/// How a write transaction begins on PostgreSQL: `BEGIN`, then the write lock.
const PG_BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(7466346977)";

/// The fence's check as one statement of PostgreSQL's simple protocol, its names as
/// constants; `None` when a name cannot be written as one.
fn pg_fence_check(fence: &leases::Fence) -> Option<String> {
    let rollout = pg_literal(&fence.rollout)?;
    Some(match &fence.device {
        Some(device) => format!(
            "SELECT runner_epoch FROM rollout_devices WHERE rollout_id = {rollout} AND device = {}",
            pg_literal(device)?
        ),
        None => format!("SELECT lease_epoch FROM rollouts WHERE id = {rollout}"),
    })
}

/// Where [`fenced_message`] says the epoch the database holds.
const NOW: &str = "{now}";

/// What a write refused by `fence` says, with [`NOW`] where the epoch the database holds goes.
fn fenced_message(fence: &leases::Fence) -> String {
    match &fence.device {
        Some(device) => format!(
            "rollout {} device {device}: the job was claimed again or taken back \
             (epoch {} here, {NOW} now); this agent no longer writes for it",
            fence.rollout, fence.epoch
        ),
        None => format!(
            "rollout {}: another node took its lease over (epoch {} here, {NOW} now); \
             this node no longer writes for it",
            fence.rollout, fence.epoch
        ),
    }
}

/// The fence's check of a write made in one round trip ([`Db::write_in_one_trip`]): a
/// statement of PostgreSQL's simple protocol that returns no row while the epoch holds, and
/// otherwise fails the transaction with SQLSTATE [`FENCED_STATE`] and [`fenced_message`]. It
/// calls a function (`fleetup_fence_job`, `fleetup_fence_rollout`, made by a migration), whose
/// read is planned once per connection. A job's epoch must be the fence's (a job that is gone
/// fails it too); a rollout's, when the rollout is there. `None` when a name cannot be
/// written as a constant.
fn pg_fence_raise(fence: &leases::Fence) -> Option<String> {
    let rollout = pg_literal(&fence.rollout)?;
    let message = pg_literal(&fenced_message(fence))?;
    let epoch = fence.epoch;
    Some(match &fence.device {
        Some(device) => format!(
            "SELECT * FROM fleetup_fence_job({rollout}, {}, {epoch}, {message})",
            pg_literal(device)?
        ),
        None => format!("SELECT * FROM fleetup_fence_rollout({rollout}, {epoch}, {message})"),
    })
}

/// The SQLSTATE of a write refused by [`pg_fence_raise`]'s check.
const FENCED_STATE: &str = "FL001";

/// `s` as a PostgreSQL string constant with C-style escapes (`E'…'`), which reads the same
/// whatever `standard_conforming_strings` says: a backslash and a quote are escaped, and
/// nothing else is special. `None` for a NUL, which no text value of PostgreSQL holds.
pub fn pg_literal(s: &str) -> Option<String> {
    if s.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

/// A pooled connection idle for longer than this is pinged before it is handed out, and
/// dropped if the server does not answer (a restarted PostgreSQL, a dropped TCP session).
/// One used more recently is not: sqlx's default pings on every acquire, one more round trip
/// to the server (or to SQLite's worker thread) for every transaction and read, which at
/// hundreds of device jobs is thousands a second.
const PING_IDLE: Duration = Duration::from_secs(10);

fn ping_if_idle(
    conn: &mut AnyConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for < PING_IDLE {
            return Ok(true);
        }
        Ok(sqlx::Connection::ping(conn).await.is_ok())
    })
}

/// Below this much free space in the data directory (or 5% of a smaller file system), the
/// service says it is degraded.
const LOW_SPACE: u64 = 8 * 1024 * 1024;

/// Whether a database error means the disk is full or failing, not a fault of the request:
/// SQLite's SQLITE_FULL and SQLITE_IOERR families, PostgreSQL's class 53 (insufficient
/// resources: disk full, out of memory) and 58 (system error: I/O).
fn storage_error(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        return if code.starts_with("53") {
            Some(format!(
                "the database server cannot take the change ({code}: {})",
                pg.message()
            ))
        } else if code.starts_with("58") {
            Some(format!(
                "the database server cannot write ({code}: {})",
                pg.message()
            ))
        } else {
            None
        };
    }
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
    conn: Option<PoolConnection<Any>>,
    db: Db,
    /// This writer's turn: on SQLite given back when the transaction ends (dropped after the
    /// connection), on PostgreSQL once the advisory lock is held.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Tx {
    /// The connection stays in the `Tx` until its statement has been answered: a caller
    /// dropped on the way (an HTTP client that gave up, a timeout) drops the `Tx`, which
    /// closes the connection, never hands it back to the pool in the middle of a transaction.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Storage(
                "the transaction was already closed".into(),
            ));
        };
        match sqlx::query("COMMIT").execute(&mut **conn).await {
            Ok(_) => {
                // Committed: the connection goes back to the pool.
                self.conn = None;
                self.db.wrote(Ok(()));
                Ok(())
            }
            Err(e) => {
                if let Some(mut conn) = self.conn.take() {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    let _ = conn.close().await;
                }
                Err(self.db.failed(e))
            }
        }
    }

    /// Run `q`, whose last statement is `COMMIT` (SQLite runs a query's statements in turn),
    /// and end the transaction as [`Tx::commit`] does: the writes and the commit in one call to
    /// the connection's thread. Every row of every statement comes back. A failure anywhere,
    /// the commit's included, rolls back and closes the connection.
    pub(crate) async fn fetch_all_and_commit<'q>(
        mut self,
        q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Storage(
                "the transaction was already closed".into(),
            ));
        };
        match q.fetch_all(&mut **conn).await {
            Ok(rows) => {
                self.conn = None;
                self.db.wrote(Ok(()));
                Ok(rows)
            }
            Err(e) => {
                if let Some(mut conn) = self.conn.take() {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    let _ = conn.close().await;
                }
                Err(self.db.failed(e))
            }
        }
    }

    /// Undo the transaction and hand the connection back (a dry run's end).
    pub(crate) async fn rollback(mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut **conn).await {
            if let Some(conn) = self.conn.take() {
                let _ = conn.close().await;
            }
            return Err(StoreError::Database(e));
        }
        self.conn = None;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not committed (an error on the way, or the caller dropped while a statement
            // was out): the connection closes with its transaction, which the server then
            // rolls back (on PostgreSQL, with the advisory lock). It is not reused.
            drop(conn.detach());
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a Tx is used only before commit"))
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a Tx is used only before commit"))
    }
}

impl Db {
    /// Open (creating if needed) a SQLite database file and apply pending migrations; the
    /// data directory is the file's.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::connect(&DatabaseUrl::Sqlite(path.to_path_buf()), &dir).await
    }

    /// Connect to the database (creating a SQLite file if needed) and apply pending
    /// migrations: `migrations/sqlite` or `migrations/postgres`, which give the same schema.
    pub async fn connect(url: &DatabaseUrl, data_dir: &Path) -> Result<Self, StoreError> {
        let db = Self::connect_unmigrated(url, data_dir).await?;
        match db.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&db.pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&db.pool)
                    .await?
            }
        }
        Ok(db)
    }

    async fn connect_unmigrated(url: &DatabaseUrl, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (pool, write_pool, file_dir) = match url {
            DatabaseUrl::Sqlite(path) => {
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let options = |max| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .test_before_acquire(false)
                        .before_acquire(ping_if_idle)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                // WAL (readers never wait for the writer), foreign keys on, and
                                // a writer waits up to 10 s for another process's write lock.
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                };
                let pool = options(8).connect(&url).await?;
                let write_pool = options(1).connect(&url).await?;
                let dir = path
                    .parent()
                    .map(Path::to_path_buf)
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("."));
                (pool, write_pool, Some(dir))
            }
            DatabaseUrl::Postgres(u) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .test_before_acquire(false)
                    .before_acquire(ping_if_idle)
                    .connect(u)
                    .await?;
                (pool.clone(), pool, None)
            }
        };
        Ok(Self {
            pool,
            write_pool,
            backend: url.backend(),
            dir: data_dir.to_path_buf(),
            file_dir,
            write_failure: Arc::new(Mutex::new(None)),
            writers: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begin a write transaction. Writes are serialized on both servers, so every
    /// read-then-write in a transaction sees what it changes: SQLite's `BEGIN IMMEDIATE` takes
    /// the write lock at once (two writers never deadlock upgrading a read lock), and on
    /// PostgreSQL every write transaction takes one transaction-scoped advisory lock. The
    /// writes this task holds back ([`PRE_WRITES`]) are made first, after the fence's check.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        let mut tx = self.begin_fenced().await?;
        for w in take_pre_writes() {
            w.write(&mut tx).await.map_err(|e| match e {
                StoreError::Database(e) => self.failed(e),
                e => e,
            })?;
        }
        Ok(tx)
    }

    /// On PostgreSQL, a fenced write of one statement whose values are written in it as
    /// constants, in one round trip instead of three (`BEGIN` with the lock and the check,
    /// the statement, `COMMIT`): the write lock, the fence's check ([`pg_fence_raise`]) and
    /// the statement go in one query of the simple protocol, which the server runs as one
    /// transaction. A stale epoch fails the check, and the server rolls all of it back. The
    /// statement's rows come back. `None` where this does not apply: SQLite, a write without
    /// a fence, writes held back for this transaction ([`PRE_WRITES`]), or a name or value
    /// that cannot be written as a constant (`statement` gives `None`); the caller then
    /// writes through [`Db::begin`]. `statement` is written only when the rest applies.
    pub(crate) async fn write_in_one_trip(
        &self,
        statement: impl FnOnce() -> Option<String>,
    ) -> Option<Result<Vec<sqlx::any::AnyRow>, StoreError>> {
        if self.backend != Backend::Postgres
            || PRE_WRITES
                .try_with(|w| !w.borrow().is_empty())
                .unwrap_or(false)
        {
            return None;
        }
        let fence = leases::FENCE.try_with(Clone::clone).ok()?;
        let check = pg_fence_raise(&fence)?;
        let script = format!(
            "SELECT count(*) FROM pg_advisory_xact_lock({PG_WRITE_LOCK}); {check}; {}",
            statement()?
        );
        Some(self.one_trip(&script).await)
    }

    /// This writer's turn ([`Db::writers`]), waited for at most [`WRITER_TURN_WAIT`].
    async fn writer_turn(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, StoreError> {
        tokio::time::timeout(WRITER_TURN_WAIT, self.writers.clone().lock_owned())
            .await
            .map_err(|_| {
                StoreError::Database(sqlx::Error::Protocol(format!(
                    "no turn to write within {} s: another write of this service holds the database",
                    WRITER_TURN_WAIT.as_secs()
                )))
            })
    }

    async fn one_trip(&self, script: &str) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let turn = self.writer_turn().await?;
        // In a `Tx`, so that a caller dropped while the query is out closes the connection
        // rather than hand it back in the middle of the server's transaction.
        let mut tx = Tx {
            conn: Some(self.write_pool.acquire().await?),
            db: self.clone(),
            _turn: Some(turn),
        };
        match sqlx::Executor::fetch_all(&mut *tx, script).await {
            Ok(mut rows) => {
                // Committed: the connection goes back to the pool.
                tx.conn = None;
                self.wrote(Ok(()));
                // The lock's row (its count) first; the check has none.
                if rows.is_empty() {
                    return Err(StoreError::Database(sqlx::Error::Protocol(
                        "a write made in one round trip returned no row for its lock".into(),
                    )));
                }
                rows.remove(0);
                Ok(rows)
            }
            // The server rolled it all back; the connection closes with the `Tx`.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(FENCED_STATE) => {
                Err(StoreError::Fenced(e.message().to_string()))
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// A write held back ([`PreWrite`]) made in a transaction of its own.
    pub(crate) async fn write_held(&self, w: &PreWrite) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        w.write(&mut tx).await?;
        tx.commit().await
    }

    async fn begin_fenced(&self) -> Result<Tx, StoreError> {
        // The turn before the connection: a writer waiting for its turn holds no connection
        // that readers could use.
        let turn = self.writer_turn().await?;
        let conn = self.write_pool.acquire().await?;
        // In the `Tx` before `BEGIN` is sent: dropped while it waits for the lock, the `Tx`
        // closes the connection. Handed back to the pool instead, the connection would take
        // the lock once its wait ended and keep it, idle in its transaction, for whatever
        // read used it next: every writer of every node would then wait for ever.
        let mut tx = Tx {
            conn: Some(conn),
            db: self.clone(),
            _turn: Some(turn),
        };
        // A rollout task's writes carry the lease epoch it claimed (fencing): once another
        // node has claimed the rollout since, none of them is taken. Claims are writes too,
        // serialized with this one, so the check holds until the commit.
        // A site agent's writes for a job carry the job's runner epoch the same way.
        let fence = leases::FENCE.try_with(Clone::clone).ok();
        let check = fence.as_ref().map(|f| match &f.device {
            Some(_) => {
                "SELECT runner_epoch FROM rollout_devices WHERE rollout_id = $1 AND device = $2"
            }
            None => "SELECT lease_epoch FROM rollouts WHERE id = $1",
        });
        // PostgreSQL's extended protocol takes one statement per round trip, its simple
        // protocol several but no parameters: with the fence's names as constants, `BEGIN`,
        // the lock and the check go in one round trip, as on SQLite.
        let inline = match (self.backend, fence.as_ref()) {
            (Backend::Postgres, Some(fence)) => pg_fence_check(fence),
            _ => None,
        };
        let epoch: Option<i64> = match (self.backend, fence.as_ref().zip(check), inline) {
            (Backend::Postgres, Some(_), Some(check)) => {
                let sql = format!(
                    "BEGIN; SELECT count(*) FROM pg_advisory_xact_lock({PG_WRITE_LOCK}); {check}"
                );
                // The lock's row (its count), then the check's row if the job or rollout is
                // there.
                let rows = sqlx::Executor::fetch_all(&mut *tx, sql.as_str())
                    .await
                    .map_err(|e| self.failed(e))?;
                match rows.get(1) {
                    Some(row) => Some(sqlx::Row::try_get(row, 0)?),
                    None => None,
                }
            }
            // SQLite takes the statements of one query in turn: the check goes with `BEGIN`,
            // one call to the connection's thread instead of two, for every write.
            (Backend::Sqlite, Some((fence, check)), _) => {
                let sql = format!("BEGIN IMMEDIATE; {check}");
                let mut q = sqlx::query_scalar(&sql).bind(&fence.rollout);
                if let Some(device) = &fence.device {
                    q = q.bind(device);
                }
                // All rows, not the first result: that is `BEGIN`'s, which has none.
                q.fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.failed(e))?
                    .into_iter()
                    .next()
            }
            (backend, checked, _) => {
                let begin = match backend {
                    Backend::Sqlite => "BEGIN IMMEDIATE",
                    Backend::Postgres => PG_BEGIN,
                };
                if let Err(e) = sqlx::Executor::execute(&mut *tx, begin).await {
                    return Err(self.failed(e));
                }
                match checked {
                    Some((fence, check)) => {
                        let mut q = sqlx::query_scalar(check).bind(&fence.rollout);
                        if let Some(device) = &fence.device {
                            q = q.bind(device);
                        }
                        q.fetch_optional(&mut *tx).await?
                    }
                    None => None,
                }
            }
        };
        if self.backend == Backend::Postgres {
            // The advisory lock serializes the writes from here: the next writer of this node
            // may take a connection and queue for the lock in the server, which hands it on
            // at each commit without a round trip to this process. At most two connections
            // of this node's pool are then writing or waiting to.
            tx._turn = None;
        }
        let Some(fence) = fence else {
            return Ok(tx);
        };
        // A job's epoch must be the fence's (a job that is gone refuses it too); a rollout's,
        // when the rollout is there.
        let stale = match fence.device {
            Some(_) => epoch != Some(fence.epoch),
            None => epoch.is_some_and(|e| e != fence.epoch),
        };
        if stale {
            tx.rollback().await?;
            let now = epoch.map_or_else(|| "none".to_string(), |e| e.to_string());
            return Err(StoreError::Fenced(
                fenced_message(&fence).replace(NOW, &now),
            ));
        }
        Ok(tx)
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
        if let Some(dir) = &self.file_dir
            && let Ok(st) = rustix::fs::statvfs(dir)
        {
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
            sqlx::query("UPDATE write_probe SET at = $1 WHERE id = 1")
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

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.write_pool.close().await;
        self.pool.close().await
    }
}

/// `fleetup db migrate`: copy the store at `from` into the empty database at `to` (whose
/// schema is made first). A SQLite source must exist: it is never created empty.
pub async fn migrate_database(
    from: &DatabaseUrl,
    to: &DatabaseUrl,
) -> Result<copy::CopyReport, StoreError> {
    if from == to {
        return Err(StoreError::Url(format!(
            "--from and --to are the same database ({from})"
        )));
    }
    let dir_of = |u: &DatabaseUrl| match u {
        DatabaseUrl::Sqlite(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        DatabaseUrl::Postgres(_) => PathBuf::from("."),
    };
    if let DatabaseUrl::Sqlite(p) = from
        && !p.is_file()
    {
        return Err(StoreError::Url(format!("{from}: no such database file")));
    }
    let source = Db::connect(from, &dir_of(from)).await?;
    let target = Db::connect(to, &dir_of(to)).await?;
    let report = source.copy_into(&target).await;
    source.close().await;
    target.close().await;
    report
}

/// Now, as the store writes a moment: RFC 3339 in UTC to the millisecond, always three
/// digits (`2026-12-07T22:31:18.445Z`). Finer digits were noise that every poll of a rollout
/// carried (a step's start, end and seconds, for each of thousands of devices); events are put
/// in order by their ids, not their times.
pub(crate) fn now_text() -> String {
    ms_text(jiff::Timestamp::now())
}

/// `t` as [`now_text`] writes it.
pub(crate) fn ms_text(t: jiff::Timestamp) -> String {
    format!("{t:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_written_to_the_millisecond_with_three_digits() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            ms_text(at("2026-12-07T22:31:18.445293633Z")),
            "2026-12-07T22:31:18.445Z"
        );
        assert_eq!(
            ms_text(at("2026-12-07T22:31:18Z")),
            "2026-12-07T22:31:18.000Z"
        );
        assert_eq!(
            ms_text(at("2026-12-07T22:31:18.4Z")),
            "2026-12-07T22:31:18.400Z"
        );
        let now = now_text();
        assert_eq!(now.len(), "2026-12-07T22:31:18.445Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
    }

    #[test]
    fn names_are_written_as_escaped_constants_for_the_fence_check() {
        assert_eq!(pg_literal("sw1").as_deref(), Some("E'sw1'"));
        assert_eq!(pg_literal(r"it's a\b").as_deref(), Some(r"E'it''s a\\b'"));
        assert_eq!(pg_literal("x\0y"), None);
        let fence = leases::Fence {
            rollout: "r-1".into(),
            epoch: 3,
            device: Some("o'brien".into()),
        };
        assert_eq!(
            pg_fence_check(&fence).as_deref(),
            Some(
                "SELECT runner_epoch FROM rollout_devices WHERE rollout_id = E'r-1' AND device = E'o''brien'"
            )
        );
        let rollout = leases::Fence {
            device: None,
            ..fence.clone()
        };
        assert_eq!(
            pg_fence_check(&rollout).as_deref(),
            Some("SELECT lease_epoch FROM rollouts WHERE id = E'r-1'")
        );
        // A one-trip write's check calls the migration's functions with constants.
        assert_eq!(
            pg_fence_raise(&fence).as_deref(),
            Some(
                "SELECT * FROM fleetup_fence_job(E'r-1', E'o''brien', 3, E'rollout r-1 device \
                 o''brien: the job was claimed again or taken back (epoch 3 here, {now} now); \
                 this agent no longer writes for it')"
            )
        );
        assert_eq!(
            pg_fence_raise(&rollout).as_deref(),
            Some(
                "SELECT * FROM fleetup_fence_rollout(E'r-1', 3, E'rollout r-1: another node \
                 took its lease over (epoch 3 here, {now} now); this node no longer writes for it')"
            )
        );
        assert_eq!(
            pg_fence_raise(&leases::Fence {
                device: Some("a\0b".into()),
                ..rollout.clone()
            }),
            None
        );
        assert!(PG_BEGIN.contains(&PG_WRITE_LOCK.to_string()));
    }

    #[test]
    fn database_urls_parse_and_never_show_their_password() {
        assert_eq!(
            "sqlite:///var/lib/fleetup/fleetup.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite("/var/lib/fleetup/fleetup.db".into()))
        );
        assert_eq!(
            "sqlite:fleetup.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite("fleetup.db".into()))
        );
        let pg: DatabaseUrl = "postgres://fleetup:s3cret@db.example.net:5432/fleetup"
            .parse()
            .unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert_eq!(
            pg.to_string(),
            "postgres://fleetup:***@db.example.net:5432/fleetup"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        for (bad, says) in [
            (
                "mysql://u:p@h/db",
                "must start with sqlite:// or postgres://",
            ),
            ("sqlite://", "needs a file path"),
            ("sqlite:///x.db?mode=ro", "may not hold '?'"),
            ("postgres://u:p@h:5432/", "names no database"),
            ("postgres://u:p@h:notaport/db", "not a valid URL"),
        ] {
            let err = bad.parse::<DatabaseUrl>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains(":p@"), "{bad}: the password shows: {err}");
        }
    }

    /// Writers of one process take turns (the same code on both servers; SQLite here): a
    /// second writer waits for the first to commit (it neither fails nor holds a connection
    /// meanwhile), and many at once all commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_writers_take_turns_and_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("fleetup.db")).await.unwrap();
        let first = db.begin().await.unwrap();
        // More waiting writers than the pool has connections (8).
        let waiting: Vec<_> = (0..16)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.begin().await?.commit().await })
            })
            .collect();
        // Readers are not held up by writers waiting for their turn: those hold no connection.
        for _ in 0..20 {
            tokio::time::timeout(Duration::from_secs(30), db.ping())
                .await
                .expect("a reader got a connection")
                .unwrap();
        }
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "the writers wait for the first to end"
        );
        first.commit().await.unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }

        let writers: Vec<_> = (0..64)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut tx = db.begin().await?;
                    sqlx::query(
                        "INSERT INTO api_tokens (name, role, hash, bootstrap, created_at) \
                         VALUES ($1, 'viewer', $2, 0, '2026-12-06T00:00:00Z')",
                    )
                    .bind(format!("writer-{i}"))
                    .bind(format!("hash-{i}"))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE name LIKE 'writer-%'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(n, 64);
    }
}
