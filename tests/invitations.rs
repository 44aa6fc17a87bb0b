//! End to end: invitations through the real binaries. `vault-admin user invite ADDR` and
//! `user create NAME --email ADDR` mail (or print) a single-use code bound to the
//! address; `vault register NAME --email ADDR --invite CODE` opens the account in one
//! step, the keys made on the invitee's machine; `user invites` lists and revokes.

use std::time::Duration;

use vault_e2e::{Client, Out, PASSWORD, TestServer};

const INVITE_ONLY: &str = "registration = \"invite\"\n";

/// The code on the mail's `Invitation code: XXXXXXXX` line.
fn invitation_code(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.trim().strip_prefix("Invitation code: "))
        .map(|c| c.trim().to_string())
        .expect("an invitation code line")
}

/// A mail's text with its quoted-printable soft line breaks and `=3D` undone (the mail
/// library encodes bodies with lines over 76 characters that way; mail readers decode it).
fn readable(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

fn register_invited(
    client: &Client,
    server: &TestServer,
    user: &str,
    email: &str,
    code: &str,
) -> Out {
    client.run_stdin(
        &[
            "register",
            user,
            "--email",
            email,
            "--invite",
            code,
            "--server",
            &server.addr,
            "--fingerprint",
            &server.fingerprint,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
}

fn invitations(server: &TestServer) -> Vec<serde_json::Value> {
    let out = server.admin(&["user", "invites", "--json"]);
    serde_json::from_str(out.ok()).expect("invites --json")
}

#[test]
fn invite_only_registration_takes_one_mailed_invitation_once() {
    let server = TestServer::start_with(INVITE_ONLY);
    let ann = Client::new();
    ann.register_start(&server, "ann", "ann@example.org")
        .fails_with("registers by invitation only");

    let made = server.admin(&[
        "user",
        "invite",
        "Ann@Example.org",
        "--server",
        &server.addr,
    ]);
    let said = made.ok();
    assert!(
        said.contains("invitation 1 for ann@example.org, valid until"),
        "{said}"
    );
    assert!(said.contains("mail written to"), "{said}");
    let mail =
        readable(&server.wait_for_mail("ann@example.org", |m| m.contains("Invitation code: ")));
    let code = invitation_code(&mail);
    assert!(!said.contains(&code), "the code goes by mail only: {said}");
    let command = format!(
        "vault register NAME --email ann@example.org --invite {code} --server {} --fingerprint {}",
        server.addr, server.fingerprint
    );
    assert!(
        mail.contains(&command),
        "the mail says what to run:\n{mail}"
    );

    // Bound to its address, and to its code; an address without an invitation and a
    // wrong code get the same answer, so the answer does not tell who was invited.
    let bob = Client::new();
    let none = register_invited(&bob, &server, "bob", "bob@example.org", &code)
        .fails_with("that invitation code is not valid for bob@example.org")
        .to_string();
    let wrong = if code == "ABCD2345" {
        "ABCD2346"
    } else {
        "ABCD2345"
    };
    let wrong = register_invited(&ann, &server, "ann", "ann@example.org", wrong)
        .fails_with("that invitation code is not valid for ann@example.org")
        .to_string();
    assert_eq!(none.replace("bob@", "ann@"), wrong);
    let audit = server.admin(&["audit", "--json"]);
    assert!(
        audit
            .ok()
            .contains("wrong code for invitation 1, 4 tries left"),
        "{}",
        audit.stdout
    );

    let out = register_invited(
        &ann,
        &server,
        "ann",
        "ann@example.org",
        &code.to_lowercase(),
    );
    assert!(
        out.ok().contains("Account ann created and logged in."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("vault-rk-"),
        "the recovery key is shown"
    );
    let who: serde_json::Value =
        serde_json::from_str(ann.run(&["whoami", "--json"]).ok()).expect("json");
    assert_eq!(who["user"], "ann");
    assert_eq!(who["email"], "ann@example.org");
    // Nothing else was mailed: the invitation's code was the verification.
    assert_eq!(server.outbox_mails("ann@example.org").len(), 1);

    // Single-use.
    let again = Client::new();
    register_invited(&again, &server, "ann2", "ann@example.org", &code)
        .fails_with("that invitation code is not valid for ann@example.org");
    let list = invitations(&server);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "used");
    assert_eq!(list[0]["used_by"], "ann");
    assert_eq!(list[0]["failed_attempts"], 1);
    let table = server.admin(&["user", "invites"]);
    assert!(table.ok().contains("used by ann"), "{}", table.stdout);
    let audit = server.admin(&["audit", "--json"]);
    for event in ["invitation_created", "invitation_rejected", "registered"] {
        assert!(audit.ok().contains(event), "{event} in {}", audit.stdout);
    }
}

#[test]
fn revoked_and_expired_invitations_are_refused() {
    let server = TestServer::start_with(INVITE_ONLY);
    let print = |email: &str, expires: &str| {
        let out = server.admin(&["user", "invite", email, "--print", "--expires", expires]);
        out.ok()
            .lines()
            .find_map(|l| l.strip_prefix("code: "))
            .expect("printed code")
            .to_string()
    };
    let carl_code = print("carl@example.org", "7d");
    let revoked = server.admin(&["user", "invites", "--revoke", "carl@example.org"]);
    assert!(
        revoked
            .ok()
            .contains("revoked invitation 1 for carl@example.org")
    );
    register_invited(
        &Client::new(),
        &server,
        "carl",
        "carl@example.org",
        &carl_code,
    )
    .fails_with("that invitation code is not valid for carl@example.org");
    server
        .admin(&["user", "invites", "--revoke", "1"])
        .fails_with("is revoked already");

    let dora_code = print("dora@example.org", "1s");
    std::thread::sleep(Duration::from_millis(2100));
    register_invited(
        &Client::new(),
        &server,
        "dora",
        "dora@example.org",
        &dora_code,
    )
    .fails_with("that invitation code is not valid for dora@example.org");

    // A new invitation for an address replaces the open one.
    let first = print("eli@example.org", "7d");
    let second = print("eli@example.org", "7d");
    register_invited(&Client::new(), &server, "eli", "eli@example.org", &first)
        .fails_with("that invitation code is not valid for eli@example.org");
    register_invited(&Client::new(), &server, "eli", "eli@example.org", &second).ok();

    let status: Vec<(i64, String)> = invitations(&server)
        .iter()
        .map(|i| {
            (
                i["id"].as_i64().expect("id"),
                i["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            (4, "used".into()),
            (3, "revoked".into()),
            (2, "expired".into()),
            (1, "revoked".into())
        ]
    );
    server
        .admin(&["user", "invite", "eli@example.org"])
        .fails_with("eli@example.org already has an account (eli)");
    server
        .admin(&["user", "invite", "zed@example.org", "--expires", "1y"])
        .code
        .eq(&2)
        .then_some(())
        .expect("an unknown span is a usage error");
}

#[test]
fn user_create_reserves_the_name_for_the_address() {
    // Open registration: invitations still work, and a reserved name stays reserved.
    let server = TestServer::start();
    let out = server.admin(&[
        "user",
        "create",
        "Fay",
        "--email",
        "fay@example.org",
        "--server",
        &server.addr,
    ]);
    assert!(
        out.ok()
            .contains("account fay set up for fay@example.org: invitation 1"),
        "{}",
        out.stdout
    );
    let mail =
        readable(&server.wait_for_mail("fay@example.org", |m| m.contains("Invitation code: ")));
    assert!(
        mail.contains("An account named fay is ready for you"),
        "{mail}"
    );
    let code = invitation_code(&mail);
    assert!(mail.contains(&format!(
        "vault register fay --email fay@example.org --invite {code}"
    )));

    // Somebody else cannot take the name, with or without the code.
    Client::new()
        .register_start(&server, "fay", "mallory@example.org")
        .fails_with("that username is reserved");
    let fay = Client::new();
    register_invited(&fay, &server, "faye", "fay@example.org", &code)
        .fails_with("this invitation is for the username fay");
    server
        .admin(&["user", "create", "fay", "--email", "other@example.org"])
        .fails_with("the username fay is reserved by invitation 1 for fay@example.org");

    let out = register_invited(&fay, &server, "fay", "fay@example.org", &code);
    assert!(out.ok().contains("Account fay created"), "{}", out.stdout);
    let (_, login) = Client::login_to(&server, "fay", PASSWORD);
    login.ok();
    server
        .admin(&["user", "create", "fay", "--email", "x@example.org"])
        .fails_with("the username fay is taken");
}

#[test]
fn a_closed_server_or_a_mail_that_cannot_go_leaves_no_open_invitation() {
    let closed = TestServer::start_with("registration = \"closed\"\n");
    closed
        .admin(&["user", "invite", "gus@example.org"])
        .fails_with("refuses every registration");
    assert!(invitations(&closed).is_empty());

    // Nothing listens on port 1: the mail cannot be sent, so the invitation is revoked.
    let server = TestServer::start_with(&format!(
        "{INVITE_ONLY}[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:1\"\n"
    ));
    server
        .admin(&["user", "invite", "gus@example.org"])
        .fails_with(
            "the invitation mail to gus@example.org was not sent, so the invitation was revoked",
        );
    let list = invitations(&server);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "revoked");
}
