//! What the handler tests share: a server state on a temp SQLite file (or, with
//! `VAULT_TEST_POSTGRES_URL` set, a fresh database on that PostgreSQL server), and accounts
//! with sessions, made straight in the database. [`Fixture`] puts them together for the
//! tests of files, groups and chat: a server with named users, each request going through
//! the router as on a connection. Each area adds its own requests to it with a trait in
//! its `tests` module.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::RunQueryDsl;
use vault_proto::proto::{ApiError, ErrorCode, Request, Response};
use vault_proto::sizes::sealed_len;

use crate::accounts::session_refusal;
use crate::blobs::{BlobId, BlobStore, FsBlobStore};
use crate::config::Config;
use crate::db::{self, Db, DbConn};
use crate::groups::Caller;
use crate::mail::queue::{MailQueue, MailWorker};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

pub type R<T> = Result<T, Box<dyn std::error::Error>>;

/// With `VAULT_TEST_POSTGRES_URL` set (a server where the user may create databases), a
/// fresh database on it for one test, named after `prefix`; else `None` (the test uses a
/// temp SQLite file).
pub fn fresh_postgres_database(prefix: &str) -> R<Option<String>> {
    use diesel::Connection;
    let Ok(url) = std::env::var("VAULT_TEST_POSTGRES_URL") else {
        return Ok(None);
    };
    let name = format!("vault_{prefix}_{}", BlobId::random().as_str());
    let mut admin = diesel::PgConnection::establish(&url)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let base = url.split('?').next().unwrap_or(&url);
    let (server, _) = base
        .rsplit_once('/')
        .ok_or("VAULT_TEST_POSTGRES_URL needs a database name")?;
    Ok(Some(format!("{server}/{name}")))
}

/// A server state in `dir` with the default configuration changed by `config`, and the
/// blob store `store` makes of the plain one (a test may wrap it to make it fail). Its
/// mail queue has no worker: what it would mail is dropped.
pub fn state(
    dir: &tempfile::TempDir,
    prefix: &str,
    config: impl FnOnce(&mut Config),
    store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
) -> R<ServerState> {
    Ok(state_with_mail(dir, prefix, config, store)?.0)
}

/// [`state`], and the worker side of its mail queue, from which a test takes what the
/// handlers queued.
pub fn state_with_mail(
    dir: &tempfile::TempDir,
    prefix: &str,
    config: impl FnOnce(&mut Config),
    store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
) -> R<(ServerState, MailWorker)> {
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config(&mut cfg);
    if let Some(url) = fresh_postgres_database(prefix)? {
        cfg.database_url = url;
    }
    let db = Db::open(&cfg.database_url())?;
    let blobs = store(FsBlobStore::open(dir.path().join("blobs"))?);
    let (mail, worker) = MailQueue::new(cfg.mail.queue_size);
    let state = ServerState::new(cfg, db, blobs, mail, [0; 32], String::new());
    Ok((state, worker))
}

/// An account `name` with public key `public_key` and quota `quota` bytes.
pub fn add_user(
    conn: &mut DbConn,
    name: &str,
    public_key: &[u8],
    quota: i64,
) -> R<db::users::User> {
    let email = format!("{name}@example.org");
    Ok(db::users::insert(
        conn,
        &db::users::NewUser {
            username: name,
            email: &email,
            auth_hash: "x",
            kdf_salt: &[0; 16],
            kdf_memory_kib: 8,
            kdf_iterations: 1,
            kdf_parallelism: 1,
            account_key_by_kek: &[],
            account_key_by_recovery: &[],
            public_key,
            private_key_sealed: &[],
            quota_bytes: quota,
            locked: false,
            created_at: db::now(),
        },
    )?)
}

/// An account as [`add_user`] makes it, with a live session.
pub fn add_user_with_session(
    conn: &mut DbConn,
    name: &str,
    public_key: &[u8],
    quota: i64,
) -> R<SessionCtx> {
    let user = add_user(conn, name, public_key, quota)?;
    let token = format!("token of {name}");
    let session = db::sessions::insert(conn, user.id, token.as_bytes(), "127.0.0.1")?;
    Ok(SessionCtx {
        session_id: session.id,
        user_id: user.id,
        username: name.to_owned(),
    })
}

/// The address every test user's requests come from.
const TEST_IP: &str = "127.0.0.1";

/// A server state in a temp directory and its users, each with a live session; what the
/// handler tests of files, groups and chat call. The directory goes when it is dropped.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub state: Arc<ServerState>,
    users: HashMap<String, Caller>,
}

impl Fixture {
    /// A server with the default configuration and the plain blob store, and `users` (see
    /// [`Fixture::with`]). `prefix` names its PostgreSQL database, if any.
    pub fn new(prefix: &str, users: &[&str]) -> R<Fixture> {
        Fixture::with(prefix, users, |_| {}, |s| Arc::new(s))
    }

    /// A server whose configuration `config` changes and whose blob store `store` makes of
    /// the plain one (see [`state`]), with accounts `users`, the n-th (from 1) with public
    /// key `[n; 24]`.
    pub fn with(
        prefix: &str,
        users: &[&str],
        config: impl FnOnce(&mut Config),
        store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
    ) -> R<Fixture> {
        let dir = tempfile::tempdir()?;
        let state = Arc::new(state(&dir, prefix, config, store)?);
        let mut f = Fixture {
            _dir: dir,
            state,
            users: HashMap::new(),
        };
        for (i, name) in (1..).zip(users) {
            f.add_user(name, i)?;
        }
        Ok(f)
    }

    /// Account `name` with public key `[seed; 24]`, a quota of 100 MiB and a live session.
    pub fn add_user(&mut self, name: &str, seed: u8) -> R<()> {
        let mut conn = self.state.db.conn()?;
        let session = add_user_with_session(&mut conn, name, &[seed; 24], 100 << 20)?;
        let caller = Caller {
            session,
            ip: TEST_IP.into(),
        };
        self.users.insert(name.to_owned(), caller);
        Ok(())
    }

    /// User `name` as the router sees them: their session and address.
    pub fn who(&self, name: &str) -> &Caller {
        self.users
            .get(name)
            .unwrap_or_else(|| panic!("no test user {name}"))
    }

    /// The account id of user `name`.
    pub fn id(&self, name: &str) -> i64 {
        self.who(name).user_id()
    }

    /// User `who`, if their session is live; else what `router::require_session` answers
    /// on a connection (an ended session, such as one the operator ended, is refused).
    pub async fn live(&self, who: &str) -> Result<&Caller, ApiError> {
        let caller = self.who(who);
        match session_refusal(&self.state, caller.session.session_id).await? {
            None => Ok(caller),
            Some(refusal) => Err(refusal),
        }
    }

    /// A one-frame request of `who`, through the router, after the session check
    /// [`Fixture::live`] makes.
    pub async fn call(&self, who: &str, request: Request) -> Result<Response, ApiError> {
        let caller = self.live(who).await?;
        crate::router::serve_session(&self.state, caller, request).await
    }

    /// [`Fixture::call`], for a request that must succeed.
    pub async fn ok(&self, who: &str, request: Request) -> R<Response> {
        Ok(self.call(who, request).await?)
    }

    /// A one-frame request of `session` as given (no session check), through the router.
    pub async fn serve(
        &self,
        session: &SessionCtx,
        request: Request,
    ) -> Result<Response, ApiError> {
        let caller = Caller {
            session: session.clone(),
            ip: TEST_IP.into(),
        };
        crate::router::serve_session(&self.state, &caller, request).await
    }
}

/// Arbitrary bytes of the sealed length of a `plain`-byte file.
pub fn sealed_bytes(plain: u64, seed: u8) -> Vec<u8> {
    (0..sealed_len(plain))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The error of a result that must be one.
pub fn err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ApiError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// The code of the error of a result that must be one.
pub fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ErrorCode {
    err(r).code
}

/// With `VAULT_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID` and `_SECRET_ACCESS_KEY` set
/// (`.ci/garage start` prints them), settings for that bucket under a fresh prefix of its
/// own; else `None`.
pub fn s3_settings() -> Option<crate::blobs::S3Settings> {
    let var = |name: &str| std::env::var(format!("VAULT_TEST_S3_{name}")).ok();
    Some(crate::blobs::S3Settings {
        endpoint: var("ENDPOINT").filter(|e| !e.is_empty())?,
        bucket: var("BUCKET")?,
        region: var("REGION").unwrap_or_else(|| "garage".into()),
        access_key_id: var("ACCESS_KEY_ID")?,
        secret_access_key: zeroize::Zeroizing::new(var("SECRET_ACCESS_KEY")?),
        path_style: true,
        prefix: format!("test-{}/", BlobId::random()),
    })
}
