//! The real binaries as subprocesses: finding them, a `vault-server` in a temp dir with a
//! cheap password KDF, and `vault` runs timed with their peak resident set size.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The password of the benchmark user.
pub const PASSWORD: &str = "correct horse battery staple";
/// GNU time, which reports a child's peak RSS (`%M`, KiB) and user and system CPU time
/// (`%U`, `%S`, seconds) from `wait4`.
const GNU_TIME: &str = "/usr/bin/time";

/// Where the release binaries are.
#[derive(Clone, Debug)]
pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    /// `dir`, or the directory of this executable (`target/release/`); fails, saying how to
    /// build them, when a binary is missing.
    pub fn find(dir: Option<PathBuf>) -> anyhow::Result<Bins> {
        let dir = match dir {
            Some(dir) => dir,
            None => std::env::current_exe()
                .context("cannot find this executable")?
                .parent()
                .context("this executable has no directory")?
                .to_path_buf(),
        };
        for name in ["vault-server", "vault"] {
            if !dir.join(name).is_file() {
                bail!(
                    "{} is missing: run `cargo build --release -p vault-server -p vault-cli -p vault-bench` first (or pass --bin-dir)",
                    dir.join(name).display()
                );
            }
        }
        Ok(Bins { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// How a finished `vault` run went.
#[derive(Debug)]
pub struct Run {
    pub elapsed: Duration,
    /// Peak resident set size in bytes.
    pub peak_rss: u64,
    /// User + system CPU time (only with GNU time).
    pub cpu: Option<Duration>,
    pub stdout: String,
}

/// A running `vault-server` in its own temp dir, stopped on drop.
#[derive(Debug)]
pub struct Server {
    pub root: tempfile::TempDir,
    pub addr: String,
    pub fingerprint: String,
    child: Child,
}

impl Server {
    /// Starts a server on a free loopback port. `limits` is the `[limits]` table to use
    /// (empty: the product's defaults).
    pub fn start(bins: &Bins, limits: &str) -> anyhow::Result<Server> {
        Server::start_with(bins, limits, "")
    }

    /// [`Server::start`] with more configuration tables after `[limits]` (`[chat]\n...`).
    pub fn start_with(bins: &Bins, limits: &str, tables: &str) -> anyhow::Result<Server> {
        Server::start_on(bins, limits, tables, "", &[])
    }

    /// [`Server::start_with`] with top-level keys `top` (`database_url = …`) and
    /// environment variables `env` (`VAULT_STORAGE_*`).
    pub fn start_on(
        bins: &Bins,
        limits: &str,
        tables: &str,
        top: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<Server> {
        let root = tempfile::tempdir().context("cannot make a temp dir")?;
        let data = root.path().join("data");
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{top}\n\
             [files]\ngc_interval_s = 0\n\
             [kdf]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\
             [auth_hash]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\
             [limits]\n{limits}\n{tables}",
            data.display()
        );
        let config_path = root.path().join("vault.toml");
        std::fs::write(&config_path, config).context("cannot write the server config")?;
        let log = std::fs::File::create(root.path().join("server.log"))
            .context("cannot create the server log")?;
        let mut child = Command::new(bins.path("vault-server"))
            .arg("--config")
            .arg(&config_path)
            .env("VAULT_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start vault-server")?;
        let stdout = child.stdout.take().context("no server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut fingerprint) = (None, None);
        while addr.is_none() || fingerprint.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(root.path().join("server.log")).unwrap_or_default();
                bail!("vault-server did not start within 30 s; its log:\n{log}");
            };
            if let Some(a) = line.strip_prefix("vault-server listening on ") {
                addr = Some(a.to_string());
            }
            if let Some(f) = line.strip_prefix("certificate fingerprint ") {
                fingerprint = Some(f.to_string());
            }
        }
        Ok(Server {
            root,
            addr: addr.unwrap_or_default(),
            fingerprint: fingerprint.unwrap_or_default(),
            child,
        })
    }

    /// The server's peak RSS so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        vm_hwm(self.child.id()).context("cannot read the server's peak RSS from /proc")
    }

    /// The server's RSS now (`VmRSS`), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        vm_field(self.child.id(), "VmRSS:").context("cannot read the server's RSS from /proc")
    }

    /// The server's CPU time so far (user + system, every thread).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        crate::cpu::of_process(self.child.id())
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM of vault-server failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("vault-server did not exit within 30 s of SIGTERM")
    }

    /// Adds the end of the server's log to a failure of a phase that used it.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.map_err(|e| {
            let log =
                std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            anyhow::anyhow!("{e:#}\nthe server's log ends with:\n{tail}")
        })
    }

    /// The verification code mailed to `email`, waiting up to 10 s for it: the server
    /// sends mail from a queue after it has answered.
    fn outbox_code(&self, email: &str) -> anyhow::Result<String> {
        let outbox = self.root.path().join("data").join("outbox");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for entry in std::fs::read_dir(&outbox)
                .with_context(|| format!("cannot read {}", outbox.display()))?
                .flatten()
            {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if !text
                    .lines()
                    .any(|l| l.starts_with("To: ") && l.contains(email))
                {
                    continue;
                }
                if let Some(code) = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Verification code: "))
                {
                    return Ok(code.trim().to_string());
                }
            }
            if Instant::now() > deadline {
                bail!("no verification code for {email} in {}", outbox.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `vault` user with its own client state directory.
#[derive(Debug)]
pub struct Client {
    bins: Bins,
    state: tempfile::TempDir,
}

impl Client {
    /// Registers `user` on `server` through the mailed code (which also logs in).
    pub fn register(bins: &Bins, server: &Server, user: &str) -> anyhow::Result<Client> {
        let client = Client {
            bins: bins.clone(),
            state: tempfile::tempdir().context("cannot make a temp dir")?,
        };
        let email = format!("{user}@bench.invalid");
        client.run(
            &[
                "register",
                user,
                "--email",
                &email,
                "--server",
                &server.addr,
                "--fingerprint",
                &server.fingerprint,
            ],
            None,
        )?;
        let code = server.outbox_code(&email)?;
        client.run(
            &["register", user, "--code", &code, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )?;
        Ok(client)
    }

    /// A second client of `user` (registered by another), logged in on `server` from a
    /// state directory of its own: another machine of the same person.
    pub fn login(bins: &Bins, server: &Server, user: &str) -> anyhow::Result<Client> {
        let client = Client {
            bins: bins.clone(),
            state: tempfile::tempdir().context("cannot make a temp dir")?,
        };
        client.run(
            &[
                "login",
                user,
                "--server",
                &server.addr,
                "--fingerprint",
                &server.fingerprint,
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )?;
        Ok(client)
    }

    /// This client's state directory (`VAULT_CONFIG_DIR`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Whether this `vault` has the `sync` command.
    pub fn has_sync(&self) -> bool {
        self.command(&["sync", "--help"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `vault ARGS` with this client's state directory; under GNU time when `rss_file`
    /// is given.
    pub fn command(&self, args: &[&str], rss_file: Option<&Path>) -> Command {
        let mut cmd = match rss_file {
            Some(file) => {
                let mut cmd = Command::new(GNU_TIME);
                cmd.args(["-f", "%M %U %S", "-o"])
                    .arg(file)
                    .arg(self.bins.path("vault"));
                cmd
            }
            None => Command::new(self.bins.path("vault")),
        };
        cmd.args(args)
            .env("VAULT_CONFIG_DIR", self.state.path())
            .env_remove("VAULT_PASSWORD")
            .env_remove("VAULT_LOG");
        cmd
    }

    /// Runs `vault ARGS` (with `input` on stdin), timed, with its peak RSS; fails with its
    /// stderr when it fails.
    pub fn run(&self, args: &[&str], input: Option<&str>) -> anyhow::Result<Run> {
        let rss_file = tempfile::NamedTempFile::new().context("cannot make a temp file")?;
        let gnu_time = Path::new(GNU_TIME).is_file();
        let mut cmd = self.command(args, gnu_time.then_some(rss_file.path()));
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().context("cannot start vault")?;
        if let Some(input) = input {
            child
                .stdin
                .take()
                .context("no stdin")?
                .write_all(input.as_bytes())?;
        }
        // Without GNU time, sample VmHWM until the process exits (a lower bound).
        let mut sampled = 0;
        let pid = child.id();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let out_reader = std::thread::spawn(move || read_all(stdout));
        let err_reader = std::thread::spawn(move || read_all(stderr));
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if !gnu_time && let Some(hwm) = vm_hwm(pid) {
                sampled = sampled.max(hwm);
            }
            std::thread::sleep(Duration::from_millis(if gnu_time { 1 } else { 5 }));
        };
        let elapsed = start.elapsed();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        if !status.success() {
            bail!(
                "`vault {}` failed ({status}): {}",
                args.join(" "),
                stderr.trim()
            );
        }
        let (peak_rss, cpu) = if gnu_time {
            let text = std::fs::read_to_string(rss_file.path())?;
            gnu_time_figures(&text)
                .with_context(|| format!("unexpected output of {GNU_TIME}: {text:?}"))?
        } else {
            (sampled, None)
        };
        Ok(Run {
            elapsed,
            peak_rss,
            cpu,
            stdout,
        })
    }
}

/// Peak RSS in bytes and CPU time from the last line GNU time wrote (`%M %U %S`).
fn gnu_time_figures(text: &str) -> Option<(u64, Option<Duration>)> {
    let mut fields = text.lines().last()?.split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((kib * 1024, Duration::try_from_secs_f64(user + system).ok()))
}

fn read_all(stream: Option<impl std::io::Read>) -> String {
    let mut text = String::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_string(&mut text);
    }
    text
}

/// `VmHWM` of process `pid` in bytes, if it is still there.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    vm_field(pid, "VmHWM:")
}

/// A `kB` field of `/proc/PID/status`, in bytes.
pub fn vm_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_time_figures_come_from_the_last_line() {
        // GNU time puts a note about a failed command on a line of its own before them.
        let text = "Command exited with non-zero status 1\n20480 1.52 0.25\n";
        let (rss, cpu) = gnu_time_figures(text).expect("figures");
        assert_eq!(rss, 20480 * 1024);
        assert_eq!(cpu, Some(Duration::from_millis(1770)));
        assert_eq!(gnu_time_figures("20480\n"), None);
    }
}
