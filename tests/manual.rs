//! End to end: the shell completions and manual pages the three binaries generate from
//! their clap definitions. The bash script loads in `bash` and completes a subcommand and
//! a flag; every command has a page, and `man -l` renders one.

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
