//! A small disk for the tests of a full one: a tmpfs of a few MiB mounted in a mount
//! namespace of its own, made with `unshare --user --map-root-user --mount` (no privilege
//! needed where unprivileged user namespaces are allowed, as on Debian and Ubuntu; root
//! may always) and held by a `sleep` process. Programs run on it through `nsenter` into
//! that process's namespaces; the test reads and writes its files through
//! `/proc/PID/root`, the holder's view of the filesystem.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mounted tmpfs; unmounted when dropped (the namespace goes with its holder).
#[derive(Debug)]
pub struct SmallDisk {
    holder: Child,
    /// Where the tmpfs is mounted, as programs inside see it.
    pub mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB.
    pub fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).expect("mount point");
        let script = format!(
            "mount -t tmpfs -o size={mib}m,mode=0755 tmpfs '{}' && echo mounted && exec sleep 100000",
            mount.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux) to make a small disk");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
        if line.trim() != "mounted" {
            let out = holder.wait_with_output().expect("wait");
            panic!(
                "could not mount a tmpfs in a user namespace (this test needs unprivileged user \
                 namespaces, or root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        SmallDisk {
            holder,
            mount,
            _dir: dir,
        }
    }

    /// `path` (a path on the disk, as programs inside see it) as the test can reach it.
    pub fn outside(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(relative)
    }

    /// The command line prefix that runs a program with the disk mounted.
    pub fn launcher(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "--target".into(),
            self.holder.id().to_string(),
            "--user".into(),
            "--mount".into(),
            "--".into(),
        ]
    }

    /// Free bytes on the disk.
    pub fn free(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.outside(&self.mount))
            .output()
            .expect("stat -f");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text
            .split_whitespace()
            .map(|p| p.parse::<u64>().unwrap_or(0));
        parts.next().unwrap_or(0) * parts.next().unwrap_or(0)
    }

    /// Fills what is left of the disk with a file named `name` (as something else on the
    /// machine would), and returns how many bytes it took.
    pub fn fill(&self, name: &str) -> u64 {
        use std::io::Write;
        let path = self.outside(&self.mount.join(name));
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let block = vec![0x5Au8; 1 << 16];
        let mut taken = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => taken += n as u64,
                Err(_) => break,
            }
        }
        let _ = file.sync_all();
        taken
    }

    /// Removes a filler made by [`SmallDisk::fill`].
    pub fn unfill(&self, name: &str) {
        std::fs::remove_file(self.outside(&self.mount.join(name))).expect("remove the filler");
    }

    /// Waits up to `within` for `check` to hold.
    pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        check()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
