//! Server configuration (README.md, Configuration). Layers, later wins: built-in defaults, the TOML
//! file given by `--config`, `VAULT_*` environment variables, command-line flags. Every key has an
//! environment variable: the key path joined by `_`, upper-cased, after `VAULT_` (`mail.smtp_url` →
//! `VAULT_MAIL_SMTP_URL`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vault_proto::kdf::KdfParams;

/// The whole server configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; empty means `sqlite://<data_dir>/vault.db`.
    pub database_url: String,
    pub storage: StorageConfig,
    pub tls: TlsConfig,
    pub mail: MailConfig,
    pub registration: Registration,
    /// A new login ends the user's older sessions.
    pub single_session: bool,
    pub default_quota: ByteSize,
    /// Versions kept per file.
    pub version_retention: u32,
    /// Days a deleted file stays in the trash.
    pub trash_retention: u32,
    pub files: FilesConfig,
    pub throttle: ThrottleConfig,
    pub codes: CodeConfig,
    /// The weakest password KDF a new or changed password may use; offered to clients.
    pub kdf: KdfParams,
    /// Argon2id parameters for hashing the auth key the client sends.
    pub auth_hash: KdfParams,
    pub limits: Limits,
    pub sessions: SessionConfig,
    pub groups: GroupsConfig,
    pub chat: ChatConfig,
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: PathBuf::from("vault-data"),
            database_url: String::new(),
            storage: StorageConfig::default(),
            tls: TlsConfig::default(),
            mail: MailConfig::default(),
            registration: Registration::Open,
            single_session: false,
            default_quota: ByteSize(10 << 30),
            version_retention: 10,
            trash_retention: 30,
            files: FilesConfig::default(),
            throttle: ThrottleConfig::default(),
            codes: CodeConfig::default(),
            kdf: KdfParams::DEFAULT,
            auth_hash: KdfParams {
                memory_kib: 19 * 1024,
                iterations: 2,
                parallelism: 1,
            },
            limits: Limits::default(),
            sessions: SessionConfig::default(),
            groups: GroupsConfig::default(),
            chat: ChatConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// Where file blobs are kept, and the room kept free on their disk (`crate::space`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `fs` (the blob store under `<data_dir>/blobs`) or `s3` (an S3-compatible bucket,
    /// the `s3_*` keys).
    pub kind: String,
    /// Uploads that would leave less than this free on the data directory's disk are
    /// refused, so that deletions always find room.
    pub min_free: ByteSize,
    /// The size of `<data_dir>/reserve`, a file kept while there is room for it and
    /// released when the disk fills anyway, so that deletions and a restart still work
    /// (0: none).
    pub reserve: ByteSize,
    /// `http://host:port` of an S3-compatible service; empty: AWS.
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    /// Empty: `AWS_ACCESS_KEY_ID`.
    pub s3_access_key_id: String,
    /// Empty: `AWS_SECRET_ACCESS_KEY`.
    pub s3_secret_access_key: Secret,
    /// `endpoint/bucket/key` (Garage, MinIO) rather than `bucket.endpoint/key`.
    pub s3_path_style: bool,
    /// Prepended to every key in the bucket (several deployments may share one bucket).
    pub s3_prefix: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: "fs".into(),
            min_free: ByteSize(256 << 20),
            reserve: ByteSize(64 << 20),
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: Secret::default(),
            s3_path_style: true,
            s3_prefix: String::new(),
        }
    }
}

impl StorageConfig {
    /// The bucket settings of `kind = "s3"`.
    pub fn s3(&self) -> crate::blobs::S3Settings {
        let mut prefix = self.s3_prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        crate::blobs::S3Settings {
            endpoint: self.s3_endpoint.trim_end_matches('/').to_owned(),
            bucket: self.s3_bucket.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: zeroize::Zeroizing::new(self.s3_secret_access_key.0.clone()),
            path_style: self.s3_path_style,
            prefix,
        }
    }
}

/// The server's certificate (`crate::tls`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM certificate; empty: `<data_dir>/tls/cert.pem`, made on first start.
    pub cert_file: PathBuf,
    /// Its PEM private key (with `cert_file`).
    pub key_file: PathBuf,
}

/// A configured secret: read like any string, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<secret>"
        })
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// How mail leaves the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://…:465` (implicit
    /// TLS), or `smtp://host:25` (plain, for a relay on the same host).
    pub smtp_url: String,
    /// A PEM file of CA certificates to trust for the SMTP server's TLS certificate,
    /// besides the public web roots (for a relay with a private CA). Empty: web roots only.
    pub smtp_ca_file: PathBuf,
    pub from: String,
    /// Messages waiting to be sent, being sent or waiting for a retry, at most. When it is
    /// full, `register_start` and `reset_start` are answered `throttled`, whatever they
    /// would have mailed.
    pub queue_size: u32,
    /// Tries per message, the first included; then it is given up (and logged).
    pub attempts: u32,
    /// Seconds before the second try; each later retry waits four times longer.
    pub first_retry_s: u64,
}

impl MailConfig {
    /// The retry schedule of the mail queue.
    pub fn retry(&self) -> crate::mail::queue::Retry {
        crate::mail::queue::Retry {
            attempts: self.attempts,
            first_wait: std::time::Duration::from_secs(self.first_retry_s),
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: MailTransport::File,
            smtp_url: String::new(),
            smtp_ca_file: PathBuf::new(),
            from: "Vault <vault@localhost>".into(),
            queue_size: 1000,
            attempts: 4,
            first_retry_s: 15,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Each message becomes an `.eml` file under `<data_dir>/outbox/`.
    File,
    Smtp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Invite,
    Closed,
}

/// Login throttling (docs/SECURITY.md §4.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failures in a row that lock an account.
    pub account_failures: u32,
    /// Failures from one address within `ip_window_s` that slow that address.
    pub ip_failures: u32,
    pub ip_window_s: u64,
    /// The first lock; each further failure doubles it, up to `max_lock_s`.
    pub base_lock_s: u64,
    pub max_lock_s: u64,
    /// Logins from one address being checked at once; more get a quick "busy, retry".
    pub logins_in_flight_per_ip: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            account_failures: 5,
            ip_failures: 20,
            ip_window_s: 900,
            base_lock_s: 30,
            max_lock_s: 3600,
            logins_in_flight_per_ip: 4,
        }
    }
}

/// Mailed verification codes (docs/FORMAT.md §5).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeConfig {
    pub ttl_s: u64,
    pub max_attempts: u32,
    pub resend_cooldown_s: u64,
}

impl Default for CodeConfig {
    fn default() -> Self {
        CodeConfig {
            ttl_s: 600,
            max_attempts: 5,
            resend_cooldown_s: 60,
        }
    }
}

/// Per-connection, per-address and server-wide limits. A connection that has not logged in
/// (or has logged out) is held to the smaller `prelogin_*` limits: what it may cost the
/// server is bounded before anyone knows who it is. IPv6 addresses count per /64.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub connections_per_ip: u32,
    /// Of an address's connections, how many may be not logged in at once.
    pub prelogin_connections_per_ip: u32,
    /// Connections not logged in, server-wide.
    pub prelogin_connections: u32,
    /// Concurrent request streams of a logged-in connection.
    pub concurrent_streams: u32,
    /// Concurrent request streams of a connection that has not logged in.
    pub prelogin_streams: u32,
    /// The largest request frame before login (registration material is a few KiB).
    pub prelogin_frame_max: ByteSize,
    /// Bytes buffered server-wide for request frames still arriving; beyond it a request
    /// is answered "busy, retry" instead of read.
    pub request_buffer: ByteSize,
    /// The part of `request_buffer` that connections not logged in may hold.
    pub prelogin_buffer: ByteSize,
    /// Bytes a logged-in connection may have in flight towards the server (its QUIC
    /// receive window); a connection not logged in gets twice `prelogin_frame_max`.
    pub receive_window: ByteSize,
    /// The TLS handshake must be done this long after a connection's first packet, and
    /// `hello` must arrive this long after the handshake.
    pub hello_timeout_s: u64,
    /// A connection that is not logged in this long after it opened (or after its logout)
    /// is closed.
    pub login_timeout_s: u64,
    /// Sustained requests per second per connection, with bursts up to `request_burst`.
    pub requests_per_second: u32,
    pub request_burst: u32,
    pub idle_timeout_s: u64,
    /// How long a request frame may take to arrive.
    pub request_timeout_s: u64,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_per_ip: 64,
            prelogin_connections_per_ip: 16,
            prelogin_connections: 1024,
            concurrent_streams: 64,
            prelogin_streams: 4,
            prelogin_frame_max: ByteSize(64 << 10),
            request_buffer: ByteSize(64 << 20),
            prelogin_buffer: ByteSize(16 << 20),
            receive_window: ByteSize(16 << 20),
            hello_timeout_s: 10,
            login_timeout_s: 60,
            requests_per_second: 2000,
            request_burst: 4000,
            idle_timeout_s: 60,
            request_timeout_s: 30,
            shutdown_grace_s: 10,
        }
    }
}

/// Uploads and the collection of what is no longer needed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// An unfinished upload may be resumed for this long after it was opened.
    pub upload_expiry_s: u64,
    /// How often the server runs `gc` on its own (0 = never; `vault-admin gc` still works).
    pub gc_interval_s: u64,
    /// How long a blob whose version was deleted (or an orphan) stays on disk before gc
    /// removes it, so a backup that copied the database just before still finds it.
    pub blob_grace_s: u64,
    /// How often the server starts a scrub: every stored blob read back and compared
    /// with the BLAKE3 recorded when it was stored (0 = never; `vault-admin fsck
    /// --read-data` still does it). A pass goes on where it stopped after a restart.
    pub scrub_interval_s: u64,
    /// The most the scrub reads per second, so that it never starves requests.
    pub scrub_rate: ByteSize,
}

/// The least `files.scrub_rate` accepted: a slower scrub would sleep long between reads.
pub const SCRUB_RATE_MIN: u64 = 1 << 20;

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            upload_expiry_s: 24 * 3600,
            gc_interval_s: 3600,
            blob_grace_s: 3600,
            // Weekly at 16 MiB/s: a few per cent of a disk's bandwidth and well under 1 %
            // of a core for BLAKE3, which still reads about 9 TiB in a week.
            scrub_interval_s: 7 * 24 * 3600,
            scrub_rate: ByteSize(16 << 20),
        }
    }
}

/// Session lifetime and how fast admin changes reach live connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub idle_expiry_days: u32,
    /// How often the server looks for sessions ended elsewhere (admin kick, lock).
    pub check_interval_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_expiry_days: 30,
            check_interval_ms: 1000,
        }
    }
}

/// Groups' shared spaces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// The quota a new group's space starts with (`vault-admin group set-quota` changes
    /// one group's).
    pub default_quota: ByteSize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            default_quota: ByteSize(10 << 30),
        }
    }
}

/// The chat relay.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// The longest message text; the server refuses a ciphertext over this plus
    /// [`CHAT_SEAL_OVERHEAD`] bytes.
    pub max_text_bytes: u64,
    /// Messages one user may send per minute (counted by each server instance).
    pub messages_per_minute: u32,
}

/// What sealing adds to a message's text, at most (the body's CBOR framing, nonce, tag).
pub const CHAT_SEAL_OVERHEAD: u64 = 256;

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_text_bytes: 64 * 1024,
            messages_per_minute: 120,
        }
    }
}

/// The Prometheus endpoint (`crate::telemetry`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served over plain HTTP (TCP), without authentication;
    /// written `""` (the default): no endpoint, and nothing is counted.
    #[serde(with = "optional_addr")]
    pub listen: Option<SocketAddr>,
}

/// An optional address written as a string, `""` for none (so that the key has a default
/// in the file and an environment variable).
mod optional_addr {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an address: write it as \"127.0.0.1:9464\" (empty: off)"
            ))
        })
    }
}

/// A byte count written as a number or with a unit (`"10GiB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => vault_proto::units::parse_size(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// (`cause`, not `source`: the message already includes it, and `{:#}` would repeat it.)
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Config {
    /// Loads defaults ← file ← environment ← flags, then checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                        path: path.into(),
                        cause,
                    })?,
                )
            }
            None => None,
        };
        Config::from_text(file.zip(text.as_deref()), env, flags)
    }

    /// [`Config::load`] with the file already read: `file` is its path (named in errors)
    /// and its text.
    pub fn from_text(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut table = defaults.clone();
        if let Some((path, text)) = file {
            let from_file: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.into(),
                        message: e.to_string(),
                    })?;
            merge(&mut table, from_file);
        }
        let file = file.map(|(path, _)| path);
        apply_env(&defaults, &mut table, &[], &env)?;
        let mut config: Config = table.try_into().map_err(|e: toml::de::Error| match file {
            Some(path) => ConfigError::Parse {
                path: path.into(),
                message: e.to_string(),
            },
            None => ConfigError::Invalid(e.to_string()),
        })?;
        if config.storage.kind == "s3" {
            let storage = &mut config.storage;
            if storage.s3_access_key_id.is_empty() {
                storage.s3_access_key_id = env("AWS_ACCESS_KEY_ID").unwrap_or_default();
            }
            if storage.s3_secret_access_key.0.is_empty() {
                storage.s3_secret_access_key =
                    Secret(env("AWS_SECRET_ACCESS_KEY").unwrap_or_default());
            }
        }
        if let Some(listen) = flags.listen {
            config.listen = listen;
        }
        if let Some(dir) = &flags.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &flags.database_url {
            config.database_url = url.clone();
        }
        config.check()?;
        Ok(config)
    }

    /// The effective database URL.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("vault.db").display())
        } else {
            self.database_url.clone()
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            return invalid(
                "tls.cert_file and tls.key_file go together: set both (the same files on \
                 every instance) or neither (<data_dir>/tls/)"
                    .into(),
            );
        }
        match self.storage.kind.as_str() {
            "fs" => {}
            "s3" => {
                let s = &self.storage;
                if s.s3_bucket.is_empty() {
                    return invalid("storage.kind = \"s3\" needs storage.s3_bucket".into());
                }
                if s.s3_access_key_id.is_empty() || s.s3_secret_access_key.0.is_empty() {
                    return invalid(
                        "storage.kind = \"s3\" needs a key: storage.s3_access_key_id and \
                         storage.s3_secret_access_key (or AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY)"
                            .into(),
                    );
                }
                if !(s.s3_endpoint.is_empty()
                    || s.s3_endpoint.starts_with("http://")
                    || s.s3_endpoint.starts_with("https://"))
                {
                    return invalid(format!(
                        "storage.s3_endpoint = {:?}: write it as http://host:port or \
                         https://host (empty: AWS)",
                        s.s3_endpoint
                    ));
                }
            }
            other => {
                return invalid(format!(
                    "storage.kind = {other:?}: use \"fs\" (blobs under the data directory) \
                     or \"s3\" (an S3-compatible bucket)"
                ));
            }
        }
        if self.mail.transport == MailTransport::Smtp && self.mail.smtp_url.is_empty() {
            return invalid("mail.transport = \"smtp\" needs mail.smtp_url (e.g. smtps://user:pass@mail.example.org)".into());
        }
        if self.mail.queue_size == 0 || self.mail.attempts == 0 {
            return invalid("mail.queue_size and mail.attempts must be at least 1".into());
        }
        self.kdf
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("kdf: {e}")))?;
        self.auth_hash
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("auth_hash: {e}")))?;
        let l = &self.limits;
        if [
            l.concurrent_streams,
            l.requests_per_second,
            l.connections_per_ip,
            l.prelogin_connections_per_ip,
            l.prelogin_connections,
            l.prelogin_streams,
            self.throttle.logins_in_flight_per_ip,
        ]
        .contains(&0)
            || l.hello_timeout_s == 0
            || l.login_timeout_s == 0
        {
            return invalid("limits must be at least 1".into());
        }
        let frame_max = vault_proto::proto::MAX_FRAME_LEN as u64;
        if l.prelogin_frame_max.0 < 4096 || l.prelogin_frame_max.0 > frame_max {
            return invalid(format!(
                "limits.prelogin_frame_max = {}: it must be between 4096 and {frame_max} bytes",
                l.prelogin_frame_max.0
            ));
        }
        if l.prelogin_buffer.0 < l.prelogin_frame_max.0 || l.request_buffer.0 < frame_max {
            return invalid(format!(
                "limits.request_buffer must hold one {frame_max}-byte frame and \
                 limits.prelogin_buffer one limits.prelogin_frame_max"
            ));
        }
        let most_text =
            vault_proto::proto::chat::MAX_MESSAGE_CIPHERTEXT as u64 - CHAT_SEAL_OVERHEAD;
        if self.chat.max_text_bytes == 0 || self.chat.max_text_bytes > most_text {
            return invalid(format!(
                "chat.max_text_bytes = {}: it must be between 1 and {most_text}",
                self.chat.max_text_bytes
            ));
        }
        if self.chat.messages_per_minute == 0 {
            return invalid("chat.messages_per_minute must be at least 1".into());
        }
        if self.files.scrub_interval_s > 0 && self.files.scrub_rate.0 < SCRUB_RATE_MIN {
            return invalid(format!(
                "files.scrub_rate = {}: it must be at least 1MiB (bytes per second), or turn \
                 the scrub off with files.scrub_interval_s = 0",
                self.files.scrub_rate.0
            ));
        }
        if self.throttle.account_failures == 0 || self.throttle.ip_failures == 0 {
            return invalid("throttle failure counts must be at least 1".into());
        }
        Ok(())
    }
}

/// Writes `over` into `base`, descending into tables present in both.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Walks the default keys; where `VAULT_<PATH>` is set, writes its value into `table`.
/// A value is read as TOML (`true`, `5`, `"x"`) and otherwise taken as a plain string.
fn apply_env(
    defaults: &toml::Table,
    table: &mut toml::Table,
    path: &[&str],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, default) in defaults {
        let mut key_path = path.to_vec();
        key_path.push(key);
        if let toml::Value::Table(sub_defaults) = default {
            let Some(toml::Value::Table(sub)) = table.get_mut(key) else {
                return Err(ConfigError::Invalid(format!(
                    "`{}` must be a table",
                    key_path.join(".")
                )));
            };
            apply_env(sub_defaults, sub, &key_path, env)?;
            continue;
        }
        let var = format!("VAULT_{}", key_path.join("_").to_uppercase());
        if let Some(raw) = env(&var) {
            let parsed = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"));
            let value = match parsed {
                Some(v) if v.type_str() == default.type_str() => v,
                _ => toml::Value::String(raw),
            };
            table.insert(key.clone(), value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The keys of a TOML table, with their tables' keys under `prefix.`.
    fn keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(table) = value {
            for (k, v) in table {
                let path = format!("{prefix}{k}");
                keys(&format!("{path}."), v, out);
                out.push(path);
            }
        }
    }

    #[test]
    fn the_example_configuration_holds_every_key_at_its_default_and_the_readme_shows_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("docs/vault-server.example.toml");
        let text = std::fs::read_to_string(&path).expect("the example configuration");
        let parsed = Config::load(Some(&path), |_| None, &Overrides::default())
            .expect("the example configuration parses");
        let json = |c: &Config| serde_json::to_value(c).expect("serializable");
        assert_eq!(json(&parsed), json(&Config::default()), "not the defaults");

        let (mut listed, mut known) = (Vec::new(), Vec::new());
        keys("", &toml::from_str(&text).expect("toml"), &mut listed);
        keys(
            "",
            &toml::Value::try_from(Config::default()).expect("toml"),
            &mut known,
        );
        listed.sort();
        known.sort();
        assert_eq!(listed, known, "the example names every key, and only keys");

        let body: String = text
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        assert!(
            readme.contains(&format!("```toml\n{body}```")),
            "README.md's Configuration block is not docs/vault-server.example.toml"
        );
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn s3_storage_takes_its_key_from_the_aws_variables_and_never_shows_the_secret() {
        let c = Config::load(
            None,
            env_of(&[
                ("VAULT_STORAGE_KIND", "s3"),
                ("VAULT_STORAGE_S3_ENDPOINT", "http://127.0.0.1:3900/"),
                ("VAULT_STORAGE_S3_BUCKET", "vault"),
                ("VAULT_STORAGE_S3_PREFIX", "/site-a/"),
                ("AWS_ACCESS_KEY_ID", "GK0123"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret"),
            ]),
            &Overrides::default(),
        )
        .expect("s3 from the environment");
        let s3 = c.storage.s3();
        assert_eq!(s3.endpoint, "http://127.0.0.1:3900");
        assert_eq!(s3.prefix, "site-a/");
        assert_eq!(s3.access_key_id, "GK0123");
        assert_eq!(s3.secret_access_key.as_str(), "very-secret");
        assert!(s3.path_style);
        assert!(!format!("{c:?}{s3:?}").contains("very-secret"));
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::load(None, env_of(&[]), &Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:7443");
        assert_eq!(c.data_dir, PathBuf::from("vault-data"));
        assert_eq!(c.database_url(), "sqlite://vault-data/vault.db");
        assert_eq!(c.registration, Registration::Open);
        assert!(!c.single_session);
        assert_eq!(c.version_retention, 10);
        assert_eq!(c.trash_retention, 30);
        assert_eq!(c.kdf, KdfParams::DEFAULT);
        assert_eq!(c.groups.default_quota, ByteSize(10 << 30));
        assert_eq!(c.chat.max_text_bytes, 65536);
        assert_eq!(c.chat.messages_per_minute, 120);
        assert_eq!(c.files.scrub_interval_s, 7 * 24 * 3600);
        assert_eq!(c.files.scrub_rate, ByteSize(16 << 20));
    }

    #[test]
    fn the_scrub_rate_is_checked_unless_the_scrub_is_off() {
        let c = Config::load(
            None,
            env_of(&[("VAULT_FILES_SCRUB_RATE", "64MiB")]),
            &Overrides::default(),
        )
        .expect("load");
        assert_eq!(c.files.scrub_rate, ByteSize(64 << 20));
        let err = Config::load(
            None,
            env_of(&[("VAULT_FILES_SCRUB_RATE", "1000")]),
            &Overrides::default(),
        )
        .expect_err("too slow");
        assert!(err.to_string().contains("files.scrub_rate"), "{err}");
        let off = Config::load(
            None,
            env_of(&[
                ("VAULT_FILES_SCRUB_RATE", "0"),
                ("VAULT_FILES_SCRUB_INTERVAL_S", "0"),
            ]),
            &Overrides::default(),
        )
        .expect("off");
        assert_eq!(off.files.scrub_interval_s, 0);
    }

    #[test]
    fn chat_limits_are_checked() {
        let c = Config::load(
            None,
            env_of(&[
                ("VAULT_CHAT_MAX_TEXT_BYTES", "1000"),
                ("VAULT_CHAT_MESSAGES_PER_MINUTE", "5"),
            ]),
            &Overrides::default(),
        )
        .expect("load");
        assert_eq!(
            (c.chat.max_text_bytes, c.chat.messages_per_minute),
            (1000, 5)
        );
        for (var, value, says) in [
            ("VAULT_CHAT_MAX_TEXT_BYTES", "0", "chat.max_text_bytes"),
            (
                "VAULT_CHAT_MAX_TEXT_BYTES",
                "1000000",
                "between 1 and 98048",
            ),
            ("VAULT_CHAT_MESSAGES_PER_MINUTE", "0", "messages_per_minute"),
        ] {
            let err = Config::load(None, env_of(&[(var, value)]), &Overrides::default())
                .expect_err("refused");
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let off = Config::load(None, env_of(&[]), &Overrides::default()).expect("defaults");
        assert_eq!(off.metrics.listen, None);
        let on = Config::load(
            None,
            env_of(&[("VAULT_METRICS_LISTEN", "127.0.0.1:9464")]),
            &Overrides::default(),
        )
        .expect("metrics from the environment");
        assert_eq!(
            on.metrics.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let err = Config::load(
            None,
            env_of(&[("VAULT_METRICS_LISTEN", "localhost")]),
            &Overrides::default(),
        )
        .expect_err("not an address");
        assert!(err.to_string().contains("not an address"), "{err}");
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("vault.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nsingle_session = true\ndefault_quota = \"1GiB\"\n[mail]\nfrom = \"a@b.org\"\n",
        )
        .expect("write");
        let env = env_of(&[
            ("VAULT_LISTEN", "127.0.0.1:9001"),
            ("VAULT_MAIL_FROM", "ops@example.org"),
            ("VAULT_THROTTLE_BASE_LOCK_S", "2"),
            ("VAULT_REGISTRATION", "closed"),
            ("VAULT_GROUPS_DEFAULT_QUOTA", "2GiB"),
        ]);
        let flags = Overrides {
            data_dir: Some("/srv/vault".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), env, &flags).expect("load");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
        assert!(c.single_session);
        assert_eq!(c.default_quota, ByteSize(1 << 30));
        assert_eq!(c.mail.from, "ops@example.org");
        assert_eq!(c.throttle.base_lock_s, 2);
        assert_eq!(c.registration, Registration::Closed);
        assert_eq!(c.groups.default_quota, ByteSize(2 << 30));
        assert_eq!(c.data_dir, PathBuf::from("/srv/vault"));
        let flags = Overrides {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        };
        let c = Config::load(Some(&file), env_of(&[]), &flags).expect("load");
        assert_eq!(c.listen.port(), 0);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("vault.toml");
        std::fs::write(&file, "lisen = \"x\"\n").expect("write");
        let err = Config::load(Some(&file), env_of(&[]), &Overrides::default()).expect_err("typo");
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = Config::load(
            None,
            env_of(&[("VAULT_REGISTRATION", "sometimes")]),
            &Overrides::default(),
        )
        .expect_err("bad enum");
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = Config::load(
            None,
            env_of(&[("VAULT_STORAGE_KIND", "s4")]),
            &Overrides::default(),
        )
        .expect_err("s4");
        assert!(err.to_string().contains("\"s3\""), "{err}");
        let err = Config::load(
            None,
            env_of(&[
                ("VAULT_STORAGE_KIND", "s3"),
                ("VAULT_STORAGE_S3_BUCKET", "b"),
            ]),
            &Overrides::default(),
        )
        .expect_err("no key");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
    }
}
