//! A command on a pseudo-terminal, for what `vault` does only on a terminal (prompts that
//! ask again, notices on stderr). `script` (util-linux) makes the terminal and runs the
//! command as its controlling terminal, so hidden password prompts (`/dev/tty`) work too;
//! the test reads everything the command writes and types lines once it has been asked.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running command on its own terminal.
#[derive(Debug)]
pub struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    screen: Arc<Mutex<String>>,
    /// How much of the screen earlier [`Terminal::expect`] calls have read.
    seen: usize,
}

/// `text` quoted for `sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Terminal {
    /// Runs `program ARGS` with `env` (and nothing of `VAULT_PASSWORD`) on a new terminal.
    pub fn start(program: &Path, args: &[&str], env: &[(&str, String)]) -> Terminal {
        let line: Vec<String> = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| quote(&a))
            .collect();
        // `exec`: the shell `script` starts (`$SHELL`, else `sh`) becomes the command, so a
        // Ctrl-C typed reaches the command alone; dash would otherwise wait in front of it
        // and die of the SIGINT.
        let mut command = Command::new("script");
        command
            .args(["-qefc", &format!("exec {}", line.join(" ")), "/dev/null"])
            .env_remove("VAULT_PASSWORD")
            .env_remove("VAULT_NEW_PASSWORD")
            .env_remove("VAULT_RECOVERY_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start script (util-linux)");
        let input = child.stdin.take();
        let mut output = child.stdout.take().expect("script stdout");
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });
        Terminal {
            child,
            input,
            screen,
            seen: 0,
        }
    }

    /// Everything written to the terminal so far.
    pub fn screen(&self) -> String {
        self.screen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `needle` appears after what earlier calls saw; returns the screen.
    #[track_caller]
    pub fn expect(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if let Some(at) = screen[self.seen.min(screen.len())..].find(needle) {
                self.seen += at + needle.len();
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear on the terminal:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        let input = self.input.as_mut().expect("terminal input");
        input
            .write_all(format!("{line}\n").as_bytes())
            .expect("type on the terminal");
        input.flush().expect("type on the terminal");
    }

    /// Waits for the command to end; returns its exit code and the whole screen.
    #[track_caller]
    pub fn finish(mut self, limit: Duration) -> (i32, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader thread take the last output.
                std::thread::sleep(Duration::from_millis(100));
                drop(self.input.take());
                return (status.code().unwrap_or(-1), self.screen());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the command did not end:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the command (and `script`) now; returns the whole screen.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.screen()
    }
}
