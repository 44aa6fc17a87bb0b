//! Test support for the end-to-end suite: starts the real `vault-server` binary on a
//! loopback port in a temp dir (on PostgreSQL when `VAULT_TEST_POSTGRES_URL` is set, in a
//! fresh database dropped afterwards; with its blobs in an S3-compatible bucket, under a
//! fresh prefix, when `VAULT_TEST_S3_*` names one: `.ci/garage start`), and runs the real `vault` and `vault-admin`
//! binaries against it. The binaries are built on first use by the same profile as the
//! tests, so `cargo test --workspace` on a clean clone needs nothing else.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
pub use vault_server::blobs::BlobId;
use vault_server::blobs::BlobStore;
use vault_server::config::{Secret, StorageConfig};

pub mod raw;
pub mod small_disk;
pub mod smtp;
pub mod terminal;

/// The `[auth_hash]` section of test servers: cheap, so that tests that log in stay fast.
const CHEAP_AUTH_HASH: &str = "[auth_hash]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n";

/// A password used by tests (long enough for the client's minimum).
pub const PASSWORD: &str = "correct horse battery";

/// Path of a workspace binary built next to the test executable. `cargo test` builds
/// only the binaries of packages that have integration tests of their own, so the first
/// call builds the three binaries of this suite with the profile and target dir the tests
/// were built with (a no-op when they are fresh).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(build_binaries);
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// Runs `cargo build` for the suite's binaries and returns the directory they are in.
fn build_binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test exe>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let target_dir = profile_dir.parent().expect("target root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo)
        .args(["build", "--quiet", "--profile", &profile, "--target-dir"])
        .arg(target_dir)
        .args([
            "-p",
            "vault-server",
            "-p",
            "vault-cli",
            "-p",
            "vault-admin",
            "--bins",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .expect("run cargo build for the binaries under test");
    // When the binaries are fresh this takes a second; otherwise say what the wait is,
    // straight to the terminal (the test harness captures `eprintln!`).
    let started = Instant::now();
    let mut told = false;
    let status = loop {
        if let Some(status) = build.try_wait().expect("wait for cargo build") {
            break status;
        }
        if !told && started.elapsed() > Duration::from_secs(3) {
            let _ = writeln!(
                std::io::stderr(),
                "vault-e2e: building vault-server, vault and vault-admin for the end-to-end \
                 tests (a first build on a machine takes a few minutes)"
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "building the binaries under test failed");
    if told {
        let _ = writeln!(
            std::io::stderr(),
            "vault-e2e: binaries ready after {} s",
            started.elapsed().as_secs()
        );
    }
    profile_dir
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(output: std::process::Output) -> Out {
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a failed operation (exit 1) whose one-line error contains `needle`.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &str {
        assert_eq!(
            self.code, 1,
            "expected exit 1\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.starts_with("error: "),
            "error line: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in: {}",
            self.stderr
        );
        &self.stderr
    }
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// What a second instance shares with the first: the database and the blob store.
#[derive(Debug)]
struct Shared {
    database_url: String,
    storage_env: Vec<(String, String)>,
}

/// With `VAULT_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID` and `_SECRET_ACCESS_KEY`
/// set, the `VAULT_STORAGE_*` variables of a blob store in that bucket under a fresh
/// prefix; else none (the local store).
pub fn fresh_s3_storage() -> Vec<(String, String)> {
    let var = |name: &str| {
        std::env::var(format!("VAULT_TEST_S3_{name}"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let (Some(endpoint), Some(bucket), Some(key), Some(secret)) = (
        var("ENDPOINT"),
        var("BUCKET"),
        var("ACCESS_KEY_ID"),
        var("SECRET_ACCESS_KEY"),
    ) else {
        return Vec::new();
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!(
        "e2e-{started}-{}-{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    [
        ("KIND", "s3".to_owned()),
        ("S3_ENDPOINT", endpoint),
        ("S3_BUCKET", bucket),
        (
            "S3_REGION",
            var("REGION").unwrap_or_else(|| "garage".into()),
        ),
        ("S3_ACCESS_KEY_ID", key),
        ("S3_SECRET_ACCESS_KEY", secret),
        ("S3_PREFIX", prefix),
    ]
    .into_iter()
    .map(|(k, v)| (format!("VAULT_STORAGE_{k}"), v))
    .collect()
}

/// A fresh PostgreSQL database, dropped with the value.
#[derive(Debug)]
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> PgDatabase {
        let name = format!(
            "vault_e2e_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn =
            diesel::PgConnection::establish(admin_url).expect("connect to VAULT_TEST_POSTGRES_URL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create database");
        PgDatabase {
            admin_url: admin_url.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

/// A test server's database, opened directly ([`TestServer::open_database`]).
pub enum TestDb {
    Sqlite(diesel::SqliteConnection),
    Pg(diesel::PgConnection),
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TestDb::Sqlite(_) => "TestDb::Sqlite",
            TestDb::Pg(_) => "TestDb::Pg",
        })
    }
}

/// A running `vault-server` in its own temp dir.
#[derive(Debug)]
pub struct TestServer {
    pub root: tempfile::TempDir,
    pub addr: String,
    pub fingerprint: String,
    child: Option<Child>,
    config_text: String,
    /// The database URL the server was given (shared by [`TestServer::second_instance`]).
    database_url: String,
    /// The data directory as the test reaches it.
    data: PathBuf,
    /// What the server and `vault-admin` run under (empty, or [`SmallDisk::launcher`]).
    launcher: Vec<String>,
    _pg: Option<PgDatabase>,
    /// `VAULT_STORAGE_*` for the server and `vault-admin`: empty for the local blob store.
    storage_env: Vec<(String, String)>,
    /// The blob store, opened on first use by the test.
    store: std::sync::OnceLock<Arc<dyn BlobStore>>,
    /// The codes [`TestServer::outbox_code`] has handed out.
    codes_seen: Mutex<HashSet<String>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with("")
    }

    /// Starts a server whose config has `extra` TOML (top-level keys and tables other
    /// than `kdf`, `auth_hash` and `sessions`) added to the test defaults.
    pub fn start_with(extra: &str) -> TestServer {
        TestServer::start_full(extra, CHEAP_AUTH_HASH, None)
    }

    /// [`TestServer::start_with`], hashing auth keys at the server's default (production)
    /// Argon2 cost: for tests of what hashing load does to other users.
    pub fn start_with_default_auth_hash(extra: &str) -> TestServer {
        TestServer::start_full(extra, "", None)
    }

    /// A second server instance on this server's database, with its own data directory,
    /// address and certificate, and `extra` config: several instances of one deployment.
    pub fn second_instance(&self, extra: &str) -> TestServer {
        let shared = Shared {
            database_url: self.database_url.clone(),
            storage_env: self.storage_env.clone(),
        };
        TestServer::start_full(extra, CHEAP_AUTH_HASH, Some(shared))
    }

    /// [`TestServer::start_with`], its data directory on `disk` (a small tmpfs): the server
    /// and `vault-admin` run in the disk's mount namespace.
    pub fn start_on_disk(disk: &small_disk::SmallDisk, extra: &str) -> TestServer {
        TestServer::start_full_in(
            extra,
            CHEAP_AUTH_HASH,
            None,
            Some((
                disk.mount.join("data"),
                disk.launcher(),
                disk.outside(&disk.mount.join("data")),
            )),
        )
    }

    fn start_full(extra: &str, auth_hash: &str, shared: Option<Shared>) -> TestServer {
        TestServer::start_full_in(extra, auth_hash, shared, None)
    }

    /// `place`: the data directory as the server sees it, the launcher, and the data
    /// directory as the test sees it (default: `ROOT/data`, no launcher).
    fn start_full_in(
        extra: &str,
        auth_hash: &str,
        shared: Option<Shared>,
        place: Option<(PathBuf, Vec<String>, PathBuf)>,
    ) -> TestServer {
        let root = tempfile::tempdir().expect("tempdir");
        let (shared_database, storage_env) = match shared {
            Some(s) => (Some(s.database_url), s.storage_env),
            None => (None, fresh_s3_storage()),
        };
        let pg = match shared_database {
            Some(_) => None,
            None => std::env::var("VAULT_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .map(|u| PgDatabase::create(&u)),
        };
        let (data, launcher, data_outside) = place.unwrap_or_else(|| {
            let data = root.path().join("data");
            (data.clone(), Vec::new(), data)
        });
        let database_url = shared_database.unwrap_or_else(|| match &pg {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}", data.join("vault.db").display()),
        });
        let config_text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndatabase_url = \"{database_url}\"\n{extra}\n\
             [kdf]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\
             {auth_hash}\
             [sessions]\ncheck_interval_ms = 200\n",
            data.display()
        );
        let mut server = TestServer {
            root,
            addr: String::new(),
            fingerprint: String::new(),
            child: None,
            config_text,
            database_url,
            data: data_outside,
            launcher,
            _pg: pg,
            storage_env,
            store: std::sync::OnceLock::new(),
            codes_seen: Mutex::new(HashSet::new()),
        };
        server.launch();
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the server is running")
    }

    /// A `VmRSS`-style line of the server's `/proc/PID/status`, in KiB (`VmRSS` now,
    /// `VmHWM` the peak so far).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// `program` run the way the server runs (under the launcher, if any).
    fn launched(&self, program: PathBuf) -> Command {
        let mut command = match self.launcher.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
        };
        command.envs(self.storage_env.iter().map(|(k, v)| (k, v)));
        command
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("vault.toml")
    }

    fn launch(&mut self) {
        std::fs::write(self.config_path(), &self.config_text).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("server.log"))
            .expect("log file");
        let mut child = self
            .launched(bin("vault-server"))
            .arg("--config")
            .arg(self.config_path())
            .env("VAULT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start vault-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut addr, mut fingerprint) = (None, None);
        while addr.is_none() || fingerprint.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("server did not start; log:\n{}", self.log()));
            if let Some(a) = line.strip_prefix("vault-server listening on ") {
                addr = Some(a.to_string());
            }
            if let Some(f) = line.strip_prefix("certificate fingerprint ") {
                fingerprint = Some(f.to_string());
            }
        }
        self.addr = addr.unwrap_or_default();
        self.fingerprint = fingerprint.unwrap_or_default();
        self.child = Some(child);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts on the same address, after `between` (e.g. removing the certificate).
    pub fn restart(&mut self, between: impl FnOnce(&Path)) {
        self.stop();
        between(&self.data_dir());
        self.config_text = self.config_text.replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", self.addr),
            1,
        );
        self.launch();
    }

    /// The messages in the outbox addressed to `email`, as text, oldest first. The server
    /// sends mail from a queue after it has answered, so a message may appear a moment
    /// after the command that caused it has finished.
    pub fn outbox_mails(&self, email: &str) -> Vec<String> {
        let outbox = self.data_dir().join("outbox");
        let mut mails: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&outbox)
            .expect("outbox")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let to_email = text
                    .lines()
                    .any(|l| l.starts_with("To: ") && l.contains(email));
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                to_email.then_some((modified, text))
            })
            .collect();
        mails.sort_by_key(|(modified, _)| *modified);
        mails.into_iter().map(|(_, text)| text).collect()
    }

    /// Waits up to 10 s for a message to `email` that `accept` takes, and returns it.
    pub fn wait_for_mail(&self, email: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(mail) = self
                .outbox_mails(email)
                .into_iter()
                .rev()
                .find(|m| accept(m))
            {
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "no such mail to {email} arrived in the outbox; the server's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The newest verification code mailed to `email` through the outbox that this
    /// function has not returned before, waiting up to 10 s for it: each code is handed
    /// out once, so after a second request the answer is the second code, never the
    /// first one again while the second is still on its way.
    pub fn outbox_code(&self, email: &str) -> String {
        let mut seen = self.codes_seen.lock().unwrap_or_else(|e| e.into_inner());
        let mail = self.wait_for_mail(email, |m| code_in(m).is_some_and(|c| !seen.contains(&c)));
        let code = code_in(&mail).expect("a code line");
        seen.insert(code.clone());
        code
    }

    /// A direct connection to the server's database (its SQLite file, or the test's
    /// PostgreSQL database), for tests that play a malicious or broken server.
    pub fn open_database(&self) -> TestDb {
        match &self._pg {
            Some(pg) => TestDb::Pg(
                diesel::PgConnection::establish(&pg.url()).expect("connect to the test database"),
            ),
            None => TestDb::Sqlite(
                diesel::SqliteConnection::establish(
                    self.data_dir()
                        .join("vault.db")
                        .to_str()
                        .expect("utf-8 path"),
                )
                .expect("open the test database"),
            ),
        }
    }

    /// [`TestServer::start_with`], its blobs in the local store whatever `VAULT_TEST_S3_*`
    /// says (a test then moves them with [`TestServer::set_storage_env`]).
    pub fn start_with_local_blobs(extra: &str) -> TestServer {
        TestServer::start_with_storage(extra, Vec::new())
    }

    /// [`TestServer::start_with`], relaunched on `storage_env` if that is not what it got.
    fn start_with_storage(extra: &str, storage_env: Vec<(String, String)>) -> TestServer {
        let mut server = TestServer::start_with(extra);
        if server.storage_env != storage_env {
            server.set_storage_env(storage_env);
            server.restart(|_| {});
        }
        server
    }

    /// The `VAULT_STORAGE_*` variables the server and `vault-admin` get from now on (the
    /// server at its next start).
    pub fn set_storage_env(&mut self, env: Vec<(String, String)>) {
        self.storage_env = env;
        self.store = std::sync::OnceLock::new();
    }

    pub fn storage_env(&self) -> &[(String, String)] {
        &self.storage_env
    }

    /// Whether the server keeps its blobs in an S3-compatible bucket.
    pub fn on_s3(&self) -> bool {
        !self.storage_env.is_empty()
    }

    /// The server's blob store, opened as `vault-admin` opens it (local or S3).
    pub fn blob_store(&self) -> Arc<dyn BlobStore> {
        self.store
            .get_or_init(|| {
                let env: std::collections::HashMap<_, _> =
                    self.storage_env.iter().cloned().collect();
                let var = |k: &str| {
                    env.get(&format!("VAULT_STORAGE_{k}"))
                        .cloned()
                        .unwrap_or_default()
                };
                let mut storage = StorageConfig::default();
                if self.on_s3() {
                    storage.kind = var("KIND");
                    storage.s3_endpoint = var("S3_ENDPOINT");
                    storage.s3_bucket = var("S3_BUCKET");
                    storage.s3_region = var("S3_REGION");
                    storage.s3_access_key_id = var("S3_ACCESS_KEY_ID");
                    storage.s3_secret_access_key = Secret(var("S3_SECRET_ACCESS_KEY"));
                    storage.s3_prefix = var("S3_PREFIX");
                }
                vault_server::blobs::open(&storage, &self.data_dir().join("blobs"))
                    .expect("open the server's blob store")
            })
            .clone()
    }

    /// The length of every partial blob (upload in progress) the store holds.
    pub fn partial_lens(&self) -> Vec<u64> {
        self.blob_store()
            .list_partials()
            .expect("list partial blobs")
            .into_iter()
            .map(|p| p.size)
            .collect()
    }

    /// The one sealed blob of `size` bytes, in whichever store the server uses.
    pub fn stored_blob_of_size(&self, size: u64) -> BlobId {
        let found: Vec<BlobId> = self
            .blob_store()
            .list()
            .expect("list blobs")
            .into_iter()
            .filter(|b| b.size == size)
            .map(|b| b.id)
            .collect();
        assert_eq!(found.len(), 1, "blobs of {size} bytes: {found:?}");
        found.into_iter().next().expect("one blob")
    }

    /// The bytes of the sealed blob `id`.
    pub fn blob_bytes(&self, id: &BlobId) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.blob_store()
            .open(id)
            .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
            .expect("read a blob");
        bytes
    }

    /// Replaces the sealed blob `id` with `bytes` behind the server's back (damage).
    pub fn replace_blob(&self, id: &BlobId, bytes: &[u8]) {
        let store = self.blob_store();
        store.remove(id).expect("remove a blob");
        store
            .put_many(&[(id.clone(), bytes)])
            .expect("store a blob");
    }

    /// Every sealed blob file in the server's local store.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let blobs = self.data_dir().join("blobs");
        for dir in std::fs::read_dir(blobs).expect("blobs").flatten() {
            let name = dir.file_name();
            if name.len() != 2 || !dir.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(dir.path()).expect("fanout").flatten() {
                files.push(f.path());
            }
        }
        files
    }

    /// The one sealed blob of `size` bytes.
    pub fn blob_of_size(&self, size: u64) -> PathBuf {
        let found: Vec<PathBuf> = self
            .blob_files()
            .into_iter()
            .filter(|b| std::fs::metadata(b).map(|m| m.len()).ok() == Some(size))
            .collect();
        assert_eq!(found.len(), 1, "blobs of {size} bytes: {found:?}");
        found.into_iter().next().expect("one blob")
    }

    /// The uploads the server holds open, from its database: each id and the seconds it
    /// was given (ten minutes for a batch's, a day for a single file's).
    pub fn open_uploads(&self) -> Vec<(i64, i64)> {
        #[derive(diesel::QueryableByName)]
        struct OpenUpload {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            lifetime: i64,
        }
        let query = "SELECT id, expires_at - created_at AS lifetime FROM uploads ORDER BY id";
        let rows: Vec<OpenUpload> = match self.open_database() {
            TestDb::Sqlite(mut c) => diesel::sql_query(query).load(&mut c),
            TestDb::Pg(mut c) => diesel::sql_query(query).load(&mut c),
        }
        .expect("read uploads");
        rows.into_iter().map(|u| (u.id, u.lifetime)).collect()
    }

    /// The chunks (format 2) the server holds, from its database: each blob id and sealed
    /// size, in the order they were stored.
    pub fn chunks(&self) -> Vec<(BlobId, i64)> {
        #[derive(diesel::QueryableByName)]
        struct Chunk {
            #[diesel(sql_type = diesel::sql_types::Text)]
            blob_id: String,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            sealed_size: i64,
        }
        let query = "SELECT blob_id, sealed_size FROM chunks ORDER BY id";
        let rows: Vec<Chunk> = match self.open_database() {
            TestDb::Sqlite(mut c) => diesel::sql_query(query).load(&mut c),
            TestDb::Pg(mut c) => diesel::sql_query(query).load(&mut c),
        }
        .expect("read chunks");
        rows.into_iter()
            .map(|c| (BlobId::parse(&c.blob_id).expect("a blob id"), c.sealed_size))
            .collect()
    }

    /// The bytes of uploads the server holds so far: its partial blobs (uploads of format
    /// 1, and chunks being written) and the chunks it stored (format 2, of finished and
    /// unfinished uploads alike).
    pub fn upload_bytes(&self) -> u64 {
        let partials: u64 = self.partial_lens().iter().sum();
        let chunks: i64 = self.chunks().iter().map(|(_, size)| size).sum();
        partials + chunks.max(0) as u64
    }

    /// How many blobs the server's database names: one per version, one per chunk.
    pub fn named_blobs(&self) -> u64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let query = "SELECT (SELECT COUNT(*) FROM versions) + (SELECT COUNT(*) FROM chunks) AS n";
        let row: Count = match self.open_database() {
            TestDb::Sqlite(mut c) => diesel::sql_query(query).get_result(&mut c),
            TestDb::Pg(mut c) => diesel::sql_query(query).get_result(&mut c),
        }
        .expect("count blobs");
        row.n.max(0) as u64
    }

    /// Runs one statement on the server's database (to play a malicious server).
    pub fn execute(&self, statement: &str) {
        match self.open_database() {
            TestDb::Sqlite(mut c) => diesel::sql_query(statement).execute(&mut c),
            TestDb::Pg(mut c) => diesel::sql_query(statement).execute(&mut c),
        }
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// Whether any file under the server's directory (database, blobs, logs, outbox)
    /// contains `needle`: what must never reach the server in the clear.
    pub fn holds(&self, needle: &str) -> bool {
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if std::fs::read(&path)
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
                {
                    return true;
                }
            }
        }
        false
    }

    /// Runs `vault-admin` against this server's configuration.
    pub fn admin(&self, args: &[&str]) -> Out {
        let output = self
            .admin_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vault-admin");
        Out::from(output)
    }

    /// Runs the server binary on this server's configuration once more, while this one is
    /// stopped, for a start that must fail; what it printed (killed after `within`).
    pub fn start_that_fails(&self, within: Duration) -> Out {
        let mut child = self
            .launched(bin("vault-server"))
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vault-server");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        Out::from(child.wait_with_output().expect("wait for vault-server"))
    }

    /// `vault-admin ARGS` against this server's configuration, not started yet.
    pub fn admin_command(&self, args: &[&str]) -> Command {
        let mut command = self.launched(bin("vault-admin"));
        command.arg("--config").arg(self.config_path()).args(args);
        command
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `command` with its stdout a pipe whose reading end is closed at once: every write
/// to it fails with a broken pipe. Returns what it wrote to stderr, and its exit code.
pub fn closed_stdout(mut command: Command) -> Out {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    drop(child.stdout.take());
    Out::from(child.wait_with_output().expect("wait"))
}

/// The code on a `Verification code: XXXXXXXX` line.
pub fn code_in(mail: &str) -> Option<String> {
    mail.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Verification code: ")
            .map(|c| c.trim().to_string())
    })
}

/// A `vault` user with its own client state directory.
#[derive(Debug)]
pub struct Client {
    pub dir: tempfile::TempDir,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("vault"));
        cmd.args(args)
            .env("VAULT_CONFIG_DIR", self.state_dir())
            .env_remove("VAULT_PASSWORD")
            .env_remove("VAULT_NEW_PASSWORD");
        cmd
    }

    /// Runs `vault ARGS` with no input.
    pub fn run(&self, args: &[&str]) -> Out {
        Out::from(
            self.command(args)
                .stdin(Stdio::null())
                .output()
                .expect("run vault"),
        )
    }

    /// Starts `vault` with its stdout and stderr piped to the test.
    pub fn spawn_piped(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vault")
    }

    /// Starts `vault ARGS` in the background (output discarded), to be killed by the test.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vault")
    }

    /// Starts `vault ARGS` with stdin, stdout and stderr all piped to the test.
    pub fn spawn_with_input(&self, args: &[&str]) -> Child {
        self.spawn_all_piped(args, &[])
    }

    /// Starts `vault ARGS` with extra environment variables and stdin, stdout and stderr
    /// all piped to the test.
    fn spawn_all_piped(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vault")
    }

    /// Runs `vault ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        Out::from(cmd.stdin(Stdio::null()).output().expect("run vault"))
    }

    /// Runs `vault ARGS` with `input` on standard input.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Out {
        self.run_stdin_env(args, &[], input)
    }

    /// Runs `vault ARGS` with extra environment variables and `input` on standard input.
    pub fn run_stdin_env(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Out {
        use std::io::Write;
        let mut child = self.spawn_all_piped(args, env);
        // A command may end without reading its input (it failed a check first).
        match child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
        {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
        Out::from(child.wait_with_output().expect("wait"))
    }

    /// Runs `vault ARGS` with a standard input that stays open and never gets a byte: a
    /// command that reads it would wait forever, so this panics if it has not ended
    /// within `limit` (it asked for input it should not have needed).
    #[track_caller]
    pub fn run_without_reading_stdin(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Out {
        let mut child = self.spawn_all_piped(args, env);
        let held = child.stdin.take();
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = Out::from(child.wait_with_output().expect("wait"));
                panic!(
                    "vault {args:?} waited for standard input\nstdout: {}\nstderr: {}",
                    out.stdout, out.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(held);
        Out::from(child.wait_with_output().expect("wait"))
    }

    /// Runs `vault ARGS` with its standard output closed before it writes anything, as
    /// `vault ls | head -0` would leave it.
    pub fn run_with_stdout_closed(&self, args: &[&str]) -> Out {
        closed_stdout(self.command(args))
    }

    /// Starts `vault ARGS` on a terminal of its own (see [`terminal::Terminal`]).
    pub fn terminal(&self, args: &[&str], env: &[(&str, &str)]) -> terminal::Terminal {
        let mut vars = vec![("VAULT_CONFIG_DIR", self.state_dir().display().to_string())];
        vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        terminal::Terminal::start(&bin("vault"), args, &vars)
    }

    /// `vault register USER --email EMAIL` against `server` (step 1: the server mails a
    /// code).
    pub fn register_start(&self, server: &TestServer, user: &str, email: &str) -> Out {
        self.run(&[
            "register",
            user,
            "--email",
            email,
            "--server",
            &server.addr,
            "--fingerprint",
            &server.fingerprint,
        ])
    }

    /// Registers `user` through the mailed code; returns the printed recovery key.
    pub fn register(&self, server: &TestServer, user: &str, email: &str) -> String {
        self.register_start(server, user, email).ok();
        let code = server.outbox_code(email);
        let out = self.run_stdin(
            &["register", user, "--code", &code, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        );
        out.ok();
        out.stdout
            .split_whitespace()
            .find(|w| w.starts_with("vault-rk-"))
            .expect("recovery key printed")
            .to_string()
    }

    pub fn login(&self, user: &str, password: &str) -> Out {
        self.run_stdin(
            &["login", user, "--password-stdin"],
            &format!("{password}\n"),
        )
    }

    /// Logs in on a fresh client that only knows the server.
    pub fn login_to(server: &TestServer, user: &str, password: &str) -> (Client, Out) {
        let client = Client::new();
        let out = client.run_stdin(
            &[
                "login",
                user,
                "--server",
                &server.addr,
                "--fingerprint",
                &server.fingerprint,
                "--password-stdin",
            ],
            &format!("{password}\n"),
        );
        (client, out)
    }

    /// The saved account key file, to compare keys across password changes.
    pub fn account_key_file(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("account.key")).expect("account.key")
    }

    /// A live connection resumed from this client's session, via the client library.
    pub async fn live_session(&self) -> vault_client::account::Session {
        let state = vault_client::state::StateDir::at(self.state_dir());
        vault_client::account::resume(&state)
            .await
            .expect("resume session")
    }
}

/// Installs the TLS provider once for in-process clients.
pub fn init_tls() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A running `vault chat listen --json`, its lines arriving on a channel.
#[derive(Debug)]
pub struct Listener {
    pub child: Child,
    lines: Receiver<String>,
}

impl Listener {
    pub fn start(c: &Client) -> Listener {
        let mut child = c.spawn_piped(&["chat", "listen", "--json"]);
        let stdout: ChildStdout = child.stdout.take().expect("listen stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Listener { child, lines }
    }

    /// The next JSON line of type `kind`, within `limit`.
    pub fn next(&self, kind: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value: serde_json::Value =
                        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                    if value["type"] == kind {
                        return value;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no {kind} line within {limit:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("listen ended before a {kind} line"),
            }
        }
    }

    /// Gives the listener time to start and subscribe.
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(1500));
    }

    pub fn stop(mut self) -> std::process::Output {
        let _ = self.child.kill();
        self.child.wait_with_output().expect("listen output")
    }
}

/// `len` deterministic pseudo-random bytes, different for each `seed` (file contents that
/// neither compress nor repeat).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
