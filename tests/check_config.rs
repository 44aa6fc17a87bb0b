//! End to end: `vault-server --check-config` on a server's own configuration says every
//! check is ok and exits 0; on one whose mail server does not answer it says which check
//! failed and why, and exits 1 (a database that does not answer, at once); it changes
//! nothing either way.

use std::process::Command;

use vault_e2e::{TestServer, bin};

fn check(config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(bin("vault-server"))
        .arg("--config")
        .arg(config)
        .arg("--check-config")
        .env_remove("VAULT_DATA_DIR")
        .env_remove("VAULT_DATABASE_URL")
        .output()
        .expect("run vault-server --check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_passes_a_working_configuration_and_names_what_is_wrong_in_a_broken_one() {
    let server = TestServer::start();
    let (code, stdout, stderr) = check(&server.config_path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    for what in [
        "configuration",
        "certificate",
        "database",
        "blob store",
        "mail",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok    ") && l.contains(what)),
            "{what} is checked and ok:\n{stdout}"
        );
    }
    assert!(stdout.contains("up to date"), "{stdout}");

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{port}\"\n",
            data.display()
        ),
    )
    .expect("write config");
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("FAIL  mail: cannot reach the SMTP server"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok    database") && stdout.contains("the first start creates it"),
        "a data directory not made yet is not a fault: {stdout}"
    );
    assert!(stderr.contains("1 of 5 checks failed"), "{stderr}");
    assert!(!data.exists(), "the check created nothing");

    // A PostgreSQL server that does not answer fails at once, on one line.
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\ndatabase_url = \"postgres://vault@127.0.0.1:{port}/vault\"\n",
            data.display()
        ),
    )
    .expect("write config");
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL  database: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("check database_url"), "{stdout}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // A key the configuration does not have: the file's fault, said before any check.
    std::fs::write(&config, "data_dir = \"/tmp\"\nlisten_on = \"0.0.0.0:1\"\n").expect("write");
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown field `listen_on`"), "{stderr}");
}
