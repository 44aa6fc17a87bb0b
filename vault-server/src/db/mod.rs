//! The database: one code path for SQLite (embedded default) and PostgreSQL, through
//! diesel's `MultiConnection`. `Db` is a connection pool whose `run` moves blocking
//! diesel work off the async runtime, onto one thread per connection (`workers`).
//! Migrations for both backends are embedded.
//! A change only one backend needs is a migration in that backend's set alone (SQLite's
//! `000008`: a partial index covers a query only when it holds the columns of its
//! predicate).
//!
//! The bundled SQLite is built (`LIBSQLITE3_FLAGS` in `.cargo/config.toml`) without
//! per-call connection locks, since the pool hands each connection to one thread at a
//! time, and each connection has a page cache of 6 MiB (`PRAGMA cache_size`).
//!
//! Point lookups by a unique key use `get_result`, not `first`: `first` adds a bound
//! `LIMIT ?`, and the bundled SQLite (built with STAT4) marks such a parameter as one
//! that may change the query plan, so every execution of the cached statement re-binds it
//! and re-prepares the statement (it was a third of the server's time on small uploads).

pub mod audit;
pub mod chat;
pub mod codes;
pub mod files;
pub mod groups;
pub mod invitations;
pub mod presence;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod throttle;
pub mod users;
mod workers;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A connection to either backend. PostgreSQL first, SQLite last, as diesel advises.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres(_) => "DbConn::Postgres",
            Self::Sqlite(_) => "DbConn::Sqlite",
        })
    }
}

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot connect to the database: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("cannot open the database at {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database worker stopped unexpectedly")]
    Worker,
}

pub type DbResult<T> = Result<T, DbError>;

/// A pool of database connections and the threads that use them, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<DbConn>>,
    backend: Backend,
    /// The database threads, started by the first [`Db::run`] (`vault-admin`, which uses
    /// [`Db::conn`] alone, starts none).
    workers: std::sync::OnceLock<workers::Workers>,
    threads: usize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({:?})", self.backend)
    }
}

/// Which database engine a `Db` talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Per-connection setup for SQLite: a busy timeout so concurrent writers wait instead of
/// failing, durable commits, and a page cache of up to 6 MiB per connection (SQLite's 2 MiB
/// default is less than one 10,000-entry listing touches, so its pages were read again from
/// the file for every page of the listing). (Reading the database through `mmap_size` took
/// a fifth off a 10,000-entry listing, but every mapped page counts in the server's RSS:
/// the small-files benchmark went from 60 to 98 MiB.) WAL (readers never block the
/// writer) is a property of the database file, set once by [`sqlite_use_wal`] before the
/// pool opens its connections in parallel (switching the journal mode needs the file to
/// itself).
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), diesel::r2d2::Error> {
        if let DbConn::Sqlite(c) = conn {
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA cache_size = -6144;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Switches a SQLite database file to WAL mode (creating the file if missing).
fn sqlite_use_wal(path: &str) -> Result<(), String> {
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(path).map_err(|e| e.to_string())?;
    conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
        .map_err(|e| e.to_string())
}

impl Db {
    /// Opens a pool on `url` (`sqlite://PATH`, a bare path, or `postgres://…`) and runs
    /// pending migrations.
    pub fn open(url: &str) -> DbResult<Db> {
        let db = Db::connect(url)?;
        db.migrate()?;
        Ok(db)
    }

    /// Opens a pool on `url` like `open`, but leaves migrations to the caller (the admin
    /// tool's `migrate` reports how many ran).
    pub fn connect(url: &str) -> DbResult<Db> {
        let (backend, conn_url) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                (Backend::Postgres, url.to_string())
            } else {
                (
                    Backend::Sqlite,
                    url.strip_prefix("sqlite://").unwrap_or(url).to_string(),
                )
            };
        if backend == Backend::Sqlite {
            sqlite_use_wal(&conn_url).map_err(|reason| DbError::Open {
                url: redact_url(url),
                reason,
            })?;
        }
        let manager = ConnectionManager::<DbConn>::new(conn_url);
        let connections = if backend == Backend::Sqlite { 4 } else { 8 };
        let pool = Pool::builder()
            .max_size(connections)
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(manager)
            .map_err(|e| DbError::Open {
                url: redact_url(url),
                reason: e.to_string(),
            })?;
        Ok(Db {
            pool,
            backend,
            workers: std::sync::OnceLock::new(),
            threads: connections as usize,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs pending migrations; returns how many ran. On PostgreSQL under a session
    /// advisory lock: instances of a deployment started together wait for the first one's
    /// migrations, then find none pending.
    pub fn migrate(&self) -> DbResult<usize> {
        use diesel::RunQueryDsl;
        let mut conn = self.conn()?;
        let ran = match &mut *conn {
            DbConn::Postgres(c) => {
                let key = advisory_key("migrations");
                diesel::sql_query("SELECT pg_advisory_lock($1)")
                    .bind::<diesel::sql_types::BigInt, _>(key)
                    .execute(c)?;
                let ran = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len());
                diesel::sql_query("SELECT pg_advisory_unlock($1)")
                    .bind::<diesel::sql_types::BigInt, _>(key)
                    .execute(c)?;
                ran
            }
            DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        };
        ran.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// How many migrations are pending (`vault-server --check-config`); runs none.
    pub fn pending_migrations(&self) -> DbResult<usize> {
        let mut conn = self.conn()?;
        let pending = match &mut *conn {
            DbConn::Postgres(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
            DbConn::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        };
        pending.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// A pooled connection for blocking code (the admin tool, tests).
    pub fn conn(&self) -> DbResult<PooledConnection<ConnectionManager<DbConn>>> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking database work on one of the database threads. The closure may
    /// return any error type that a `DbError` converts into (`DbError` itself, or a wire
    /// `ApiError`). Its time, waiting for a thread and a connection included, goes to the
    /// metrics (`vault_db_duration_seconds`).
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
    {
        let workers = match self.workers.get() {
            Some(workers) => workers,
            None => {
                let started = workers::Workers::start(self.threads, "db").map_err(|e| {
                    tracing::error!(error = %e, "cannot start the database threads");
                    E::from(DbError::Worker)
                })?;
                // Two first calls at once may both start threads: the loser's stop when
                // its handle is dropped here.
                self.workers.get_or_init(|| started)
            }
        };
        let pool = self.pool.clone();
        let started = std::time::Instant::now();
        let done = workers
            .run(move || {
                let mut conn = pool.get().map_err(DbError::from)?;
                work(&mut conn)
            })
            .await;
        crate::telemetry::db(started);
        done.ok_or_else(|| E::from(DbError::Worker))?
    }
}

/// Runs `work` in a transaction; any error rolls it back. Unlike diesel's own
/// `transaction`, the closure may fail with any error a `DbError` converts into.
pub fn transaction<T, E, F>(conn: &mut DbConn, work: F) -> Result<T, E>
where
    E: From<DbError>,
    F: FnOnce(&mut DbConn) -> Result<T, E>,
{
    enum Failure<E> {
        Db(diesel::result::Error),
        Work(E),
    }
    impl<E> From<diesel::result::Error> for Failure<E> {
        fn from(e: diesel::result::Error) -> Self {
            Failure::Db(e)
        }
    }
    use diesel::Connection;
    conn.transaction::<T, Failure<E>, _>(|c| work(c).map_err(Failure::Work))
        .map_err(|f| match f {
            Failure::Db(e) => E::from(DbError::Query(e)),
            Failure::Work(e) => e,
        })
}

/// On PostgreSQL, takes a transaction-scoped advisory lock per name (in one order, so two
/// lockers cannot deadlock): until the transaction ends, every other transaction, on every
/// server instance, that locks one of the names waits. On SQLite it does nothing: the
/// first write of a transaction takes the database's one write lock, which serializes
/// as much. Call it before the transaction reads what the lock guards.
pub fn lock_names(conn: &mut DbConn, names: &[&str]) -> DbResult<()> {
    use diesel::RunQueryDsl;
    if let DbConn::Postgres(pg) = conn {
        let mut keys: Vec<i64> = names.iter().map(|n| advisory_key(n)).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(key)
                .execute(pg)?;
        }
    }
    Ok(())
}

/// On PostgreSQL, `NOTIFY channel, payload`: delivered to every listener when the
/// transaction `conn` is in commits (at once outside one). Nothing on SQLite.
pub fn notify(conn: &mut DbConn, channel: &str, payload: &str) -> DbResult<()> {
    use diesel::RunQueryDsl;
    if let DbConn::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(channel)
            .bind::<diesel::sql_types::Text, _>(payload)
            .execute(pg)?;
    }
    Ok(())
}

/// On PostgreSQL, tries the session-level advisory lock `name` and runs `work` only if
/// this connection got it, releasing it after: work that one instance of a deployment at a
/// time should do (gc, expiry, the scrub). On SQLite `work` always runs.
pub fn exclusively<T>(
    conn: &mut DbConn,
    name: &str,
    work: impl FnOnce(&mut DbConn) -> T,
) -> DbResult<Option<T>> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Got {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        got: bool,
    }
    if !matches!(conn, DbConn::Postgres(_)) {
        return Ok(Some(work(conn)));
    }
    let key = advisory_key(name);
    let got = match conn {
        DbConn::Postgres(pg) => {
            diesel::sql_query("SELECT pg_try_advisory_lock($1) AS got")
                .bind::<diesel::sql_types::BigInt, _>(key)
                .get_result::<Got>(pg)?
                .got
        }
        _ => true,
    };
    if !got {
        return Ok(None);
    }
    let done = work(conn);
    if let DbConn::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .execute(pg)?;
    }
    Ok(Some(done))
}

/// A stable 64-bit key for a lock name: the first 8 bytes of its SHA-256 (every instance,
/// whatever its build, computes the same).
fn advisory_key(name: &str) -> i64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    i64::from_be_bytes(first)
}

/// Hides a password in a database URL before it reaches a message or log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On PostgreSQL one connection holds the lock while the other is turned away, then
    /// gets it; on SQLite (one instance per file's writer) the work always runs.
    #[test]
    fn exclusive_work_runs_on_one_connection_at_a_time() -> crate::testing::R<()> {
        let dir = tempfile::tempdir()?;
        let url = crate::testing::fresh_postgres_database("maintenance")?
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("x.db").display()));
        let db = Db::open(&url)?;
        let (mut one, mut two) = (db.conn()?, db.conn()?);
        let outer = exclusively(&mut one, "job", |_| exclusively(&mut two, "job", |_| ()))?;
        let inner = outer.ok_or("the first gets the lock")??;
        match db.backend() {
            Backend::Postgres => assert_eq!(inner, None, "the second is turned away"),
            Backend::Sqlite => assert_eq!(inner, Some(())),
        }
        assert_eq!(
            exclusively(&mut two, "job", |_| 5)?,
            Some(5),
            "released after"
        );
        Ok(())
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://vault:s3cret@db:5432/vault"),
            "postgres://vault:***@db:5432/vault"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
