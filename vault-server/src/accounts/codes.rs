//! Mailed verification codes: 8 characters of an unambiguous alphabet, stored as a
//! salted SHA-256, single-use, expiring, with a limit on wrong tries and a resend cooldown
//! per address and purpose (docs/FORMAT.md §5); and the queued mails that carry them.

use aws_lc_rs::digest;
use vault_proto::proto::ApiError;
use vault_proto::units::plural;
use zeroize::Zeroizing;

use crate::config::CodeConfig;
use crate::db::{self, DbConn, codes::NewCode, now};
use crate::mail::queue::{MailKind, MailQueue, MailSlot, OutgoingMail};

/// The code alphabet: no 0/O, 1/I.
pub const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
pub const CODE_LEN: usize = 8;

pub const PURPOSE_REGISTER: &str = "register";
pub const PURPOSE_RESET: &str = "reset";

/// How long a request that finds the mail queue full is told to wait.
const QUEUE_FULL_RETRY_S: u64 = 30;

/// A fresh random code (32 symbols, so each random byte maps without bias).
pub fn generate() -> Result<Zeroizing<String>, ApiError> {
    let mut bytes = Zeroizing::new([0u8; CODE_LEN]);
    aws_lc_rs::rand::fill(bytes.as_mut())
        .map_err(|_| crate::error::internal("randomness", "rand::fill failed"))?;
    Ok(Zeroizing::new(
        bytes
            .iter()
            .map(|b| ALPHABET[usize::from(b % 32)] as char)
            .collect(),
    ))
}

/// Upper-cases and strips spaces and dashes, as people type codes.
pub fn normalize(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The stored form of a code: SHA-256 over a per-code random salt and the code.
pub(crate) fn hash(salt: &[u8], code: &str) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt);
    ctx.update(code.as_bytes());
    ctx.finish().as_ref().to_vec()
}

/// Seconds left in the resend cooldown of `purpose` for `email`, if any. Within it a
/// request mails nothing; its answer does not say so. Each purpose has its own, so that
/// requests of one kind cannot hold back mail of the other.
pub fn cooldown_left(
    conn: &mut DbConn,
    config: &CodeConfig,
    purpose: &str,
    email: &str,
) -> db::DbResult<Option<u64>> {
    let cooldown = config.resend_cooldown_s as i64;
    Ok(db::codes::last_made_for(conn, purpose, email)?
        .map(|sent| sent + cooldown - now())
        .filter(|left| *left > 0)
        .map(|left| left as u64))
}

/// Stores a new code (retiring older ones of the purpose and user) and returns it in
/// clear for the mail; only its salted hash is stored.
pub fn issue(
    conn: &mut DbConn,
    config: &CodeConfig,
    purpose: &str,
    username: &str,
    email: &str,
) -> Result<Zeroizing<String>, ApiError> {
    let code = generate()?;
    store(conn, config, purpose, username, email, &code)?;
    Ok(code)
}

/// Stores `code` as the live code of (purpose, username), retiring older ones: as
/// [`issue`], with a code that was already given to the person (a checked invitation's).
pub fn store(
    conn: &mut DbConn,
    config: &CodeConfig,
    purpose: &str,
    username: &str,
    email: &str,
    code: &str,
) -> Result<(), ApiError> {
    let salt = new_salt()?;
    let at = now();
    db::codes::replace(
        conn,
        &NewCode {
            purpose,
            username,
            email,
            code_salt: &salt,
            code_hash: &hash(&salt, code),
            created_at: at,
            expires_at: at + config.ttl_s as i64,
            failed_attempts: 0,
            used: false,
        },
    )?;
    Ok(())
}

/// A fresh 16-byte salt for a stored code.
pub(crate) fn new_salt() -> Result<[u8; 16], ApiError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| crate::error::internal("randomness", "rand::fill failed"))?;
    Ok(salt)
}

/// Checks `input` against the live code for (purpose, username). A wrong code uses up one
/// try. On success returns the code row; the caller consumes it in its transaction.
pub fn check(
    conn: &mut DbConn,
    config: &CodeConfig,
    purpose: &str,
    username: &str,
    input: &str,
    client_ip: &str,
) -> Result<db::codes::CodeRow, ApiError> {
    let again = match purpose {
        PURPOSE_REGISTER => "run `vault register USER --email ADDR` again for a new one",
        _ => "run `vault reset-password USER` again for a new one",
    };
    let row = db::codes::live(conn, purpose, username)?.ok_or_else(|| {
        ApiError::forbidden(format!(
            "no verification code is pending for {username}; {again}"
        ))
    })?;
    if row.expires_at <= now() {
        return Err(ApiError::forbidden(format!(
            "the verification code has expired; {again}"
        )));
    }
    let max = i64::from(config.max_attempts);
    if row.failed_attempts >= max {
        return Err(ApiError::forbidden(format!(
            "too many wrong tries for this code; {again}"
        )));
    }
    let given = hash(&row.code_salt, &normalize(input));
    if aws_lc_rs::constant_time::verify_slices_are_equal(&given, &row.code_hash).is_err() {
        db::codes::record_failure(conn, row.id)?;
        let left = max - row.failed_attempts - 1;
        let detail = format!(
            "wrong {purpose} code, {} left",
            plural(left, "try", "tries")
        );
        db::audit::record(
            conn,
            &db::audit::Event::anonymous(client_ip, "code_rejected")
                .about(username)
                .with_detail(&detail),
        )?;
        return Err(if left > 0 {
            ApiError::forbidden(format!(
                "wrong verification code ({} left)",
                plural(left, "try", "tries")
            ))
        } else {
            ApiError::forbidden(format!(
                "wrong verification code, and that was the last try; {again}"
            ))
        });
    }
    Ok(row)
}

/// A slot in the mail queue, taken before a request looks at anything: a full queue
/// refuses every such request alike, whatever it would have mailed.
pub fn mail_slot(queue: &MailQueue) -> Result<MailSlot, ApiError> {
    queue.reserve().ok_or_else(|| {
        tracing::warn!("the mail queue is full; a request that mails was refused");
        ApiError::throttled(
            QUEUE_FULL_RETRY_S,
            format!(
                "the server has too much mail waiting to be sent; try again in {QUEUE_FULL_RETRY_S} s"
            ),
        )
    })
}

/// The mail that carries `code` for `purpose` to `email`.
pub fn code_mail(
    config: &CodeConfig,
    purpose: &str,
    username: &str,
    email: &str,
    code: &str,
) -> OutgoingMail {
    let (kind, subject, action) = match purpose {
        PURPOSE_REGISTER => (
            MailKind::RegisterCode,
            "Your Vault verification code",
            "finish registering",
        ),
        _ => (
            MailKind::ResetCode,
            "Your Vault password reset code",
            "reset your password",
        ),
    };
    OutgoingMail {
        kind,
        to: email.to_owned(),
        subject,
        body: Zeroizing::new(crate::mail::code_body(action, username, code, config.ttl_s)),
    }
}

/// The mail, without a code, that tells the owner of `email` (account `owner`) that
/// someone tried to register `requested` with their address.
pub fn notice_mail(owner: &str, email: &str, requested: &str) -> OutgoingMail {
    OutgoingMail {
        kind: MailKind::RegisterNotice,
        to: email.to_owned(),
        subject: "Someone tried to register with your address on Vault",
        body: Zeroizing::new(crate::mail::notice_body(owner, requested)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_alphabet_and_length() {
        for _ in 0..50 {
            let code = generate().expect("code");
            let code = code.as_str();
            assert_eq!(code.len(), CODE_LEN);
            assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
        }
    }

    #[test]
    fn typed_codes_are_normalized() {
        assert_eq!(normalize(" abcd-efgh "), "ABCDEFGH");
        assert_eq!(hash(b"s", "ABCDEFGH"), hash(b"s", &normalize("abcd efgh")));
        assert_ne!(hash(b"s", "ABCDEFGH"), hash(b"t", "ABCDEFGH"));
    }
}
