//! End to end: what ships beside the binaries. The shell completions and manual pages the
//! three binaries generate from their clap definitions (the bash script loads in `bash`
//! and completes a subcommand and a flag; every command has a page, and `man -l` renders
//! one), and the systemd units in `dist/systemd/` (`systemd-analyze verify` accepts them).

use std::path::Path;
use std::process::Command;

use vault_e2e::bin;

/// What bash's completion function for `program` offers for `words` (the last one being
/// completed).
fn bash_completes(program: &str, words: &[&str]) -> Vec<String> {
    let script = Command::new(bin(program))
        .args(["completions", "bash"])
        .output()
        .expect("run completions");
    assert!(
        script.status.success(),
        "{}",
        String::from_utf8_lossy(&script.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, &script.stdout).expect("write script");
    let function = format!("_{}", program.replace('-', "__"));
    let line: Vec<String> = std::iter::once(program.to_owned())
        .chain(words.iter().map(|w| w.to_string()))
        .collect();
    let current = line.last().expect("a word").clone();
    let previous = line[line.len() - 2].clone();
    let probe = format!(
        "source {file}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{joined}'; \
         COMP_POINT=${{#COMP_LINE}}; {function} {program} {current} {previous}; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file = file.display(),
        words = line.join(" "),
        cword = line.len() - 1,
        joined = line.join(" "),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_bash_completion_loads_and_completes_subcommands_and_flags() {
    assert_eq!(bash_completes("vault", &["syn"]), ["sync"]);
    assert_eq!(bash_completes("vault", &["sync", "--wat"]), ["--watch"]);
    assert_eq!(bash_completes("vault-admin", &["fsc"]), ["fsck"]);
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(bin("vault"))
            .args(["completions", shell])
            .output()
            .expect("run completions");
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("sync"),
            "{shell}: the script names the commands"
        );
    }
    let wrong = Command::new(bin("vault"))
        .args(["completions", "tcsh"])
        .output()
        .expect("run completions");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("possible values"),
        "an unknown shell lists the ones there are"
    );
}

fn page(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.1")))
        .unwrap_or_else(|e| panic!("{name}.1: {e}"))
}

#[test]
fn every_command_has_a_manual_page_and_man_renders_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let man = dir.path().join("man1");
    let d = man.to_str().expect("utf-8");
    for (program, args) in [
        ("vault", vec!["man", d]),
        ("vault-admin", vec!["man", d]),
        ("vault-server", vec!["--man", d]),
    ] {
        let out = Command::new(bin(program))
            .args(&args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{program}: nothing on stdout");
    }
    for name in [
        "vault",
        "vault-sync",
        "vault-group-create",
        "vault-chat-send",
        "vault-admin",
        "vault-admin-fsck",
        "vault-admin-user-set-quota",
        "vault-server",
    ] {
        assert!(
            page(&man, name).contains(&format!(".TH {name} 1")),
            "{name}.1 is a roff page with its title"
        );
    }
    assert!(page(&man, "vault-sync").contains("watch"));
    // `man` is on this project's machines; where it is not, the pages are still checked
    // above.
    match Command::new("man")
        .arg("-l")
        .arg(man.join("vault-sync.1"))
        .env("MANWIDTH", "100")
        .output()
    {
        Ok(out) => {
            // Bold and underline come as overstrikes (`N\bN`, `_\bx`) off a terminal.
            let mut text = String::new();
            for c in String::from_utf8_lossy(&out.stdout).chars() {
                if c == '\u{8}' {
                    text.pop();
                } else {
                    text.push(c);
                }
            }
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("NAME") && text.contains("vault-sync"),
                "{text}"
            );
            assert!(text.contains("OPTIONS") && text.contains("watch"), "{text}");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no `man` here: the pages were checked as files only");
        }
        Err(e) => panic!("run man: {e}"),
    }
}

/// `dist/systemd/NAME` with its binary paths pointed at the ones just built, in `dir`.
fn unit_for_here(name: &str, dir: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/systemd")
        .join(name);
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = text
        .replace(
            "/usr/local/bin/vault-server",
            &bin("vault-server").display().to_string(),
        )
        .replace("%h/.cargo/bin/vault", &bin("vault").display().to_string());
    let unit = dir.join(name);
    std::fs::write(&unit, text).expect("write unit");
    unit
}

/// The value of `Key=` in a unit's text (the last one, as systemd reads it).
fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_systemd_units_are_hardened_stop_gracefully_and_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = unit_for_here("vault-server.service", dir.path());
    let text = std::fs::read_to_string(&server).expect("read");
    for (key, want) in [
        ("User", "vault"),
        ("StateDirectory", "vault"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "true"),
        ("PrivateTmp", "true"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(setting(&text, key), Some(want), "{key}");
    }
    // systemd's stop timeout leaves the server its whole shutdown grace.
    let stop: u64 = setting(&text, "TimeoutStopSec")
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    let grace = vault_server::config::Config::default()
        .limits
        .shutdown_grace_s;
    assert!(
        stop > grace + 5,
        "TimeoutStopSec {stop} s against a grace of {grace} s"
    );
    let watch = unit_for_here("vault-sync@.service", dir.path());

    match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&server)
        .arg(&watch)
        .output()
    {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "systemd-analyze verify: {stderr}");
            assert!(stderr.trim().is_empty(), "no warnings: {stderr}");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no systemd-analyze here: the units were checked as text only");
        }
        Err(e) => panic!("run systemd-analyze: {e}"),
    }
}
