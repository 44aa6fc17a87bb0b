//! A login's two atomic steps in the database, so that a burst of concurrent logins is
//! throttled exactly like the same logins one after another, on one server instance or
//! many sharing a database. [`admit`] locks the account's and the address's subjects,
//! refuses while either is locked or while the attempts already being checked could lock
//! it (`throttle::admit`), and otherwise records the attempt. The password is then checked
//! outside any transaction. [`settle_failure`] and [`settle_success`] lock the subjects
//! again, remove the attempt, and write its outcome.

use vault_proto::proto::ApiError;

use crate::config::ThrottleConfig;
use crate::db::{self, DbConn, DbError, audit::Event, users::User};
use crate::throttle::{self, Policy, Refusal, Standing};

/// An admitted login: its attempt rows and the account it names, if any.
#[derive(Debug)]
pub struct Admitted {
    attempts: [i64; 2],
    pub user: Option<User>,
}

/// The two subjects of a login and who made it, for the log and the audit.
#[derive(Clone, Debug)]
pub struct Login {
    pub username: String,
    pub account: String,
    pub address: String,
    pub client_ip: String,
}

impl Login {
    pub fn new(username: &str, ip: &std::net::IpAddr) -> Login {
        Login {
            username: username.to_string(),
            account: throttle::account_subject(username),
            address: throttle::ip_subject(ip),
            client_ip: ip.to_string(),
        }
    }

    fn lock(&self, c: &mut DbConn, now: i64) -> Result<(), DbError> {
        db::throttle::lock_subjects(c, &[&self.account, &self.address], now)
    }
}

/// What a refused login is told.
pub fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Locked(wait) => ApiError::throttled(
            wait,
            format!("too many failed logins; try again in {wait} s"),
        ),
        Refusal::Crowded => ApiError::throttled(
            1,
            "too many logins for this account or from this address are being checked at \
             once; try again in a second",
        ),
    }
}

/// Admits one login attempt, in one transaction. A subject already locked is refused
/// from a plain read first: refusing needs no lock, and a flood from a locked address then
/// takes no write lock.
pub fn admit(
    c: &mut DbConn,
    config: &ThrottleConfig,
    login: &Login,
    now: i64,
) -> Result<Admitted, ApiError> {
    let locked = [&login.account, &login.address]
        .into_iter()
        .map(|subject| db::throttle::get(c, subject))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .filter_map(|row| throttle::retry_after(row.as_ref(), now))
        .max();
    if let Some(wait) = locked {
        return Err(refusal_error(Refusal::Locked(wait)));
    }
    db::transaction(c, |c| {
        login.lock(c, now)?;
        let account_row = db::throttle::get(c, &login.account)?;
        let address_row = db::throttle::get(c, &login.address)?;
        let (accounts, addresses) = (Policy::for_accounts(config), Policy::for_addresses(config));
        throttle::admit(
            Standing {
                policy: &accounts,
                row: account_row.as_ref(),
                in_flight: db::throttle::attempts_in_flight(c, &login.account)?,
            },
            Standing {
                policy: &addresses,
                row: address_row.as_ref(),
                in_flight: db::throttle::attempts_in_flight(c, &login.address)?,
            },
            config.logins_in_flight_per_ip.into(),
            now,
        )
        .map_err(refusal_error)?;
        let attempts = [
            db::throttle::start_attempt(c, &login.account, now)?,
            db::throttle::start_attempt(c, &login.address, now)?,
        ];
        let user = db::users::by_name(c, &login.username)?;
        Ok(Admitted { attempts, user })
    })
}

/// Removes an attempt that ended without an outcome (the check itself failed).
pub fn abandon(c: &mut DbConn, admitted: &Admitted) -> Result<(), DbError> {
    db::throttle::end_attempts(c, &admitted.attempts)
}

/// Settles a wrong password (or unknown name): one more failure for the account and the
/// address, with their audit events. In one transaction.
pub fn settle_failure(
    c: &mut DbConn,
    config: &ThrottleConfig,
    login: &Login,
    admitted: &Admitted,
    now: i64,
) -> Result<(), DbError> {
    db::transaction(c, |c| {
        login.lock(c, now)?;
        db::throttle::end_attempts(c, &admitted.attempts)?;
        let account = Policy::for_accounts(config).after_failure(
            &login.account,
            db::throttle::get(c, &login.account)?,
            now,
        );
        let address = Policy::for_addresses(config).after_failure(
            &login.address,
            db::throttle::get(c, &login.address)?,
            now,
        );
        db::throttle::put(c, &account)?;
        db::throttle::put(c, &address)?;
        db::audit::record(
            c,
            &Event::anonymous(&login.client_ip, "login_failed")
                .about(&login.username)
                .with_detail(&format!("failure {} in a row", account.failures)),
        )?;
        for row in [&account, &address]
            .into_iter()
            .filter(|r| r.locked_until > now)
        {
            let detail = format!(
                "{} locked for {} s after {} failures",
                row.subject,
                row.locked_until - now,
                row.failures
            );
            db::audit::record(
                c,
                &Event::by_server("lockout")
                    .about(&login.username)
                    .from_ip(&login.client_ip)
                    .with_detail(&detail),
            )?;
        }
        Ok(())
    })
}

/// Settles a correct password: the account's failures are cleared, unless failures of
/// attempts checked at the same time locked it meanwhile; then this attempt is refused
/// like any attempt during a lock (and is not a failure). Call it inside the transaction
/// that opens the session.
pub fn settle_success(
    c: &mut DbConn,
    login: &Login,
    admitted: &Admitted,
    now: i64,
) -> Result<Result<(), ApiError>, DbError> {
    login.lock(c, now)?;
    db::throttle::end_attempts(c, &admitted.attempts)?;
    let row = db::throttle::get(c, &login.account)?;
    if let Some(wait) = throttle::retry_after(row.as_ref(), now) {
        return Ok(Err(refusal_error(Refusal::Locked(wait))));
    }
    db::throttle::clear(c, &login.account)?;
    Ok(Ok(()))
}
