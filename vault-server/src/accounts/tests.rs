//! Handler-level tests of what registration and password reset reveal: the encoded
//! answers to a taken and a fresh email address, and to a known and an unknown username,
//! are the same bytes, in the resend cooldown and out of it; what each queues for mail
//! is checked on the queue's worker side. A temp SQLite database, or a fresh PostgreSQL
//! one with `VAULT_TEST_POSTGRES_URL`.

use std::net::IpAddr;
use std::sync::Arc;

use vault_proto::kdf::KdfParams;
use vault_proto::proto::{
    self, ApiError, ByteBuf, ErrorCode, NewAccount, PasswordMaterial, Response, SecretBytes,
};

use super::{codes, password, register};
use crate::db::{self, audit};
use crate::mail::queue::{MailKind, MailWorker, OutgoingMail};
use crate::state::ServerState;
use crate::testing::{self, R};

const CHEAP: KdfParams = KdfParams {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

struct Fixture {
    _dir: tempfile::TempDir,
    state: ServerState,
    mail: MailWorker,
    ip: IpAddr,
}

/// A server with one account, `olive` <olive@example.org>, and cheap password hashing.
fn fixture() -> R<Fixture> {
    fixture_with(|_| {})
}

fn fixture_with(config: impl FnOnce(&mut crate::config::Config)) -> R<Fixture> {
    let dir = tempfile::tempdir()?;
    let (state, mail) = testing::state_with_mail(
        &dir,
        "accounts",
        |c| {
            c.kdf = CHEAP;
            c.auth_hash = CHEAP;
            config(c);
        },
        |s| Arc::new(s),
    )?;
    let f = Fixture {
        _dir: dir,
        state,
        mail,
        ip: "192.0.2.7".parse()?,
    };
    f.db(|c| testing::add_user(c, "olive", b"olive's key", 1 << 30).map(|_| ()))?;
    Ok(f)
}

impl Fixture {
    fn db<T>(&self, work: impl FnOnce(&mut db::DbConn) -> R<T>) -> R<T> {
        let mut conn = self.state.db.conn()?;
        work(&mut conn)
    }

    /// The bytes a client would receive for `register_start`.
    async fn register_start(&self, username: &str, email: &str) -> Vec<u8> {
        wire(register::start(&self.state, self.ip, username, email, None).await)
    }

    /// The bytes a client would receive for `reset_start`.
    async fn reset_start(&self, username: &str) -> Vec<u8> {
        wire(password::reset_start(&self.state, self.ip, username).await)
    }

    /// The error a client would receive for `register_finish` with `code`.
    async fn register_finish(&self, username: &str, code: &str) -> Result<(), ApiError> {
        register::create(&self.state, self.ip, username, code, new_account())
            .await
            .map(|_| ())
    }

    fn audit_of(&self, username: &str) -> R<Vec<audit::AuditEntry>> {
        self.db(|c| Ok(audit::query(c, None, Some(username), 100)?))
    }
}

/// An answer as the server encodes it on the wire.
fn wire(answer: Result<Response, ApiError>) -> Vec<u8> {
    let response = answer.unwrap_or_else(Response::Error);
    proto::encode_frame(&response).expect("encodable")
}

fn new_account() -> NewAccount {
    NewAccount {
        password: PasswordMaterial {
            salt: ByteBuf::from(vec![1; 16]),
            kdf: CHEAP,
            auth_key: SecretBytes::new(vec![2; 32]),
            account_key_by_kek: ByteBuf::from(vec![3; 61]),
        },
        account_key_by_recovery: ByteBuf::from(vec![4; 61]),
        public_key: ByteBuf::from(vec![5; 400]),
        private_key_sealed: ByteBuf::from(vec![6; 1800]),
    }
}

/// The code on the mail's `Verification code:` line.
fn code_in(mail: &OutgoingMail) -> Option<String> {
    mail.body.lines().find_map(|l| {
        l.strip_prefix("Verification code: ")
            .map(|c| c.trim().to_owned())
    })
}

#[tokio::test]
async fn a_taken_email_is_answered_like_a_fresh_one_and_its_owner_gets_a_notice() -> R<()> {
    let mut f = fixture()?;
    let taken = f.register_start("mallory", "Olive@Example.org").await;
    let fresh = f.register_start("nora", "nora@example.org").await;
    assert_eq!(
        taken, fresh,
        "the same bytes for a taken and a fresh address"
    );
    let answer: Response = proto::decode_body(&fresh[4..])?;
    assert!(
        matches!(
            answer,
            Response::RegisterStarted {
                code_ttl_s: 600,
                ..
            }
        ),
        "{answer:?}"
    );

    let mails = f.mail.take_queued();
    assert_eq!(mails.len(), 2, "one mail for each request");
    let notice = &mails[0];
    assert_eq!(notice.kind, MailKind::RegisterNotice);
    assert_eq!(
        notice.to, "olive@example.org",
        "the notice goes to the owner"
    );
    assert!(
        code_in(notice).is_none(),
        "no code in the notice: {:?}",
        *notice.body
    );
    for says in [
        "Hello olive",
        "\"mallory\"",
        "nothing about your account changed",
        "ignore this mail",
        "vault reset-password olive",
    ] {
        assert!(notice.body.contains(says), "{says:?} in {:?}", *notice.body);
    }
    let code_mail = &mails[1];
    assert_eq!(code_mail.kind, MailKind::RegisterCode);
    assert_eq!(code_mail.to, "nora@example.org");
    let code = code_in(code_mail).expect("a code for the fresh address");
    assert_eq!(code.len(), codes::CODE_LEN);

    // The operator sees the attempt on the owner's account, as its own event.
    let entries = f.audit_of("olive")?;
    let attempt = entries
        .iter()
        .find(|e| e.event == "registration_email_taken")
        .expect("the attempt is in the audit log");
    assert!(attempt.detail.contains("mallory"), "{}", attempt.detail);
    assert_eq!(attempt.client_ip.as_deref(), Some("192.0.2.7"));
    assert!(
        f.audit_of("nora")?
            .iter()
            .any(|e| e.event == "registration_started"),
        "the fresh address is an ordinary start"
    );
    Ok(())
}

#[tokio::test]
async fn within_the_cooldown_both_are_answered_the_same_and_nothing_is_mailed() -> R<()> {
    let mut f = fixture()?;
    let first = f.register_start("mallory", "olive@example.org").await;
    assert_eq!(first, f.register_start("nora", "nora@example.org").await);
    assert_eq!(f.mail.take_queued().len(), 2);

    // Again, with the same names and with new ones: the same answer as before, no mail.
    for (taken_name, fresh_name) in [("mallory", "nora"), ("mallory2", "nora2")] {
        assert_eq!(
            f.register_start(taken_name, "olive@example.org").await,
            first
        );
        assert_eq!(
            f.register_start(fresh_name, "nora@example.org").await,
            first
        );
    }
    assert!(
        f.mail.take_queued().is_empty(),
        "nothing new is mailed within the cooldown"
    );
    let entries = f.audit_of("olive")?;
    assert!(
        entries
            .iter()
            .any(|e| e.detail.contains("within the resend cooldown")),
        "{entries:?}"
    );

    // Finishing fails alike for all four attempts, whether a code was mailed or not.
    let fails = |r: Result<(), ApiError>| wire(r.map(|()| Response::Ok));
    let expected = fails(f.register_finish("nora", "AAAAAAAA").await);
    for name in ["mallory", "mallory2", "nora2"] {
        assert_eq!(fails(f.register_finish(name, "AAAAAAAA").await), expected);
    }
    Ok(())
}

#[tokio::test]
async fn finishing_an_attempt_with_a_taken_email_fails_as_a_wrong_code_does() -> R<()> {
    let mut f = fixture()?;
    f.register_start("mallory", "olive@example.org").await;
    f.register_start("nora", "nora@example.org").await;
    let mails = f.mail.take_queued();
    let nora_code = code_in(&mails[1]).expect("nora's code");

    let wrong = "AAAAAAAA";
    let taken = f
        .register_finish("mallory", wrong)
        .await
        .expect_err("refused");
    let fresh = f.register_finish("nora", wrong).await.expect_err("refused");
    assert_eq!(taken, fresh);
    assert_eq!(taken.code, ErrorCode::Forbidden);
    assert_eq!(taken.message, "wrong verification code (4 tries left)");
    // Every try after that too, up to the last.
    for _ in 0..4 {
        assert_eq!(
            f.register_finish("mallory", wrong).await,
            f.register_finish("nora", wrong).await
        );
    }
    assert_eq!(
        f.register_finish("mallory", &nora_code).await,
        f.register_finish("nora", &nora_code).await,
        "used-up codes are refused alike"
    );

    // A fresh attempt whose right code is given creates the account; the taken address
    // never got one.
    f.register_start("nina", "nina@example.org").await;
    let mails = f.mail.take_queued();
    let code = code_in(&mails[0]).expect("nina's code");
    f.register_finish("nina", &code).await?;
    let nina = f.db(|c| Ok(db::users::by_name(c, "nina")?))?;
    assert_eq!(nina.map(|u| u.email).as_deref(), Some("nina@example.org"));
    let mallory = f.db(|c| Ok(db::users::by_name(c, "mallory")?))?;
    assert!(mallory.is_none());
    Ok(())
}

#[tokio::test]
async fn a_taken_username_is_refused_as_usernames_are_public() -> R<()> {
    let mut f = fixture()?;
    let answer = register::start(&f.state, f.ip, "olive", "other@example.org", None).await;
    let err = answer.expect_err("refused");
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("username is already taken"), "{err}");
    assert!(f.mail.take_queued().is_empty());
    Ok(())
}

#[tokio::test]
async fn reset_is_answered_the_same_for_known_and_unknown_names_in_and_out_of_the_cooldown() -> R<()>
{
    let mut f = fixture()?;
    let known = f.reset_start("olive").await;
    let unknown = f.reset_start("nobody").await;
    assert_eq!(known, unknown);
    let answer: Response = proto::decode_body(&known[4..])?;
    assert!(
        matches!(answer, Response::ResetStarted { code_ttl_s: 600 }),
        "{answer:?}"
    );
    let mails = f.mail.take_queued();
    assert_eq!(mails.len(), 1, "only the known account is mailed");
    assert_eq!(mails[0].kind, MailKind::ResetCode);
    assert_eq!(mails[0].to, "olive@example.org");
    let code = code_in(&mails[0]).expect("a reset code");

    // Within the cooldown: the same bytes again, no mail, and the code mailed stays valid.
    assert_eq!(f.reset_start("olive").await, known);
    assert_eq!(f.reset_start("nobody").await, known);
    assert!(
        f.mail.take_queued().is_empty(),
        "at most one mail per cooldown"
    );
    let config = f.state.config.codes.clone();
    let row = f.db(|c| {
        Ok(codes::check(
            c,
            &config,
            codes::PURPOSE_RESET,
            "olive",
            &code,
            "127.0.0.1",
        )?)
    })?;
    assert_eq!(row.email, "olive@example.org");

    for name in ["olive", "nobody"] {
        let events: Vec<_> = f
            .audit_of(name)?
            .into_iter()
            .filter(|e| e.event == "reset_requested")
            .collect();
        assert_eq!(events.len(), 2, "{name}: every request is in the audit log");
    }
    Ok(())
}

#[tokio::test]
async fn after_the_cooldown_a_known_name_gets_a_new_code() -> R<()> {
    let mut f = fixture_with(|c| c.codes.resend_cooldown_s = 0)?;
    let first = f.reset_start("olive").await;
    assert_eq!(f.reset_start("olive").await, first);
    let mails = f.mail.take_queued();
    assert_eq!(mails.len(), 2);
    assert_ne!(code_in(&mails[0]), code_in(&mails[1]));
    Ok(())
}

#[tokio::test]
async fn a_full_mail_queue_refuses_every_request_alike() -> R<()> {
    let mut f = fixture_with(|c| c.mail.queue_size = 1)?;
    let held = f.state.mail.reserve().expect("the one slot");
    let answers = [
        f.register_start("mallory", "olive@example.org").await,
        f.register_start("nora", "nora@example.org").await,
        f.reset_start("olive").await,
        f.reset_start("nobody").await,
    ];
    for answer in &answers[1..] {
        assert_eq!(*answer, answers[0]);
    }
    let answer: Response = proto::decode_body(&answers[0][4..])?;
    let Response::Error(err) = answer else {
        panic!("refused: {answer:?}")
    };
    assert_eq!(err.code, ErrorCode::Throttled { retry_after_s: 30 });
    assert!(err.message.contains("too much mail"), "{err}");
    assert!(f.mail.take_queued().is_empty());
    // Refused before anything was stored: no code waits for the next request's cooldown.
    let config = f.state.config.codes.clone();
    let left = f.db(|c| {
        Ok(codes::cooldown_left(
            c,
            &config,
            codes::PURPOSE_REGISTER,
            "nora@example.org",
        )?)
    })?;
    assert_eq!(left, None);

    drop(held);
    assert_ne!(
        f.register_start("nora", "nora@example.org").await,
        answers[0]
    );
    assert_eq!(f.mail.take_queued().len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_invitation_revoked_between_the_two_steps_refuses_the_account() -> R<()> {
    let f = fixture_with(|c| c.registration = crate::config::Registration::Invite)?;
    let issued = f.db(|c| {
        Ok(super::invitations::create(
            c,
            "pia@example.org",
            None,
            db::now() + 3600,
        )?)
    })?;
    let started = register::start(
        &f.state,
        f.ip,
        "pia",
        "pia@example.org",
        Some(issued.code.as_str()),
    )
    .await?;
    assert!(
        matches!(started, Response::RegisterStarted { .. }),
        "{started:?}"
    );
    f.db(|c| Ok(db::invitations::revoke(c, issued.id, db::now())?))?;
    let refused = f
        .register_finish("pia", &issued.code)
        .await
        .expect_err("revoked");
    assert_eq!(refused.code, ErrorCode::Forbidden);
    assert!(
        refused.message.contains("no longer valid"),
        "{}",
        refused.message
    );
    assert!(f.db(|c| Ok(db::users::by_name(c, "pia")?))?.is_none());

    // Without the revocation, the same two steps open the account and use the invitation.
    let issued = f.db(|c| {
        Ok(super::invitations::create(
            c,
            "pia@example.org",
            None,
            db::now() + 3600,
        )?)
    })?;
    register::start(
        &f.state,
        f.ip,
        "pia",
        "pia@example.org",
        Some(issued.code.as_str()),
    )
    .await?;
    f.register_finish("pia", &issued.code).await?;
    let used = f
        .db(|c| Ok(db::invitations::by_id(c, issued.id)?))?
        .expect("row");
    assert_eq!(used.used_by.as_deref(), Some("pia"));
    Ok(())
}
