//! Login throttling, as pure policy over `db::throttle` rows. An account is locked after N
//! failures in a row (30 s, doubling per further failure, up to 1 h) and a success clears
//! it; an address (an IPv4 address or an IPv6 /64) is slowed the same way after M failures
//! within a window, across all accounts, and only time clears it. Attempts still being
//! checked count as failures-to-be: a login is admitted only if the subject would still be
//! unlocked were every attempt in flight to fail ([`admit`]).

use crate::config::ThrottleConfig;
use crate::db::throttle::FailureRow;
use crate::net::address;

/// The subject key for an account.
pub fn account_subject(username: &str) -> String {
    format!("user:{username}")
}

/// The subject key for a source address (its client key: IPv6 counts per /64).
pub fn ip_subject(ip: &std::net::IpAddr) -> String {
    format!("ip:{}", address::display_key(address::client_key(*ip)))
}

/// How one kind of subject is throttled.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub threshold: i64,
    /// `None`: failures count in a row until a success; `Some(w)`: within `w` seconds.
    pub window_s: Option<i64>,
    pub base_lock_s: i64,
    pub max_lock_s: i64,
}

impl Policy {
    pub fn for_accounts(c: &ThrottleConfig) -> Policy {
        Policy {
            threshold: c.account_failures.into(),
            window_s: None,
            base_lock_s: c.base_lock_s as i64,
            max_lock_s: c.max_lock_s as i64,
        }
    }

    pub fn for_addresses(c: &ThrottleConfig) -> Policy {
        Policy {
            threshold: c.ip_failures.into(),
            window_s: Some(c.ip_window_s as i64),
            base_lock_s: c.base_lock_s as i64,
            max_lock_s: c.max_lock_s as i64,
        }
    }

    /// The lock that follows the `failures`-th failure: none below the threshold, then
    /// the base lock doubling per further failure, capped.
    pub fn lock_seconds(&self, failures: i64) -> i64 {
        if failures < self.threshold {
            return 0;
        }
        let doublings = (failures - self.threshold).min(30) as u32;
        self.base_lock_s
            .saturating_mul(1i64 << doublings)
            .min(self.max_lock_s)
    }

    /// The failures of `row` that still count at `now` (an address's only within its
    /// window).
    pub fn live_failures(&self, row: Option<&FailureRow>, now: i64) -> i64 {
        match row {
            Some(r) if self.window_s.is_none_or(|w| now - r.window_start <= w) => r.failures,
            _ => 0,
        }
    }

    /// The row after one more failure at `now`.
    pub fn after_failure(&self, subject: &str, row: Option<FailureRow>, now: i64) -> FailureRow {
        let (failures, window_start) = match row {
            Some(r) if self.window_s.is_none_or(|w| now - r.window_start <= w) => {
                (r.failures + 1, r.window_start)
            }
            _ => (1, now),
        };
        FailureRow {
            subject: subject.to_string(),
            failures,
            window_start,
            last_failure_at: now,
            locked_until: now + self.lock_seconds(failures),
        }
    }
}

/// Seconds until `row` allows another attempt, if it is locked at `now`.
pub fn retry_after(row: Option<&FailureRow>, now: i64) -> Option<u64> {
    row.filter(|r| r.locked_until > now)
        .map(|r| (r.locked_until - now) as u64)
}

/// One subject as admission sees it: its policy, its failure row and its attempts in
/// flight.
#[derive(Clone, Copy, Debug)]
pub struct Standing<'a> {
    pub policy: &'a Policy,
    pub row: Option<&'a FailureRow>,
    pub in_flight: i64,
}

/// Why a login is not checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The account or the address is locked for this many more seconds.
    Locked(u64),
    /// Attempts already being checked would lock the account or the address if they
    /// failed, or the address has `max_in_flight` attempts being checked: wait for them.
    Crowded,
}

/// Whether one more login of `account` from `address` may be checked at `now`. Called with
/// both subjects locked, and followed in the same transaction by recording the attempt, so
/// concurrent logins are admitted one at a time.
pub fn admit(
    account: Standing<'_>,
    address: Standing<'_>,
    max_in_flight_per_address: i64,
    now: i64,
) -> Result<(), Refusal> {
    let wait = [account.row, address.row]
        .into_iter()
        .filter_map(|row| retry_after(row, now))
        .max();
    if let Some(wait) = wait {
        return Err(Refusal::Locked(wait));
    }
    let would_lock = |s: &Standing<'_>| {
        s.in_flight > 0
            && s.policy
                .lock_seconds(s.policy.live_failures(s.row, now) + s.in_flight)
                > 0
    };
    if would_lock(&account)
        || would_lock(&address)
        || address.in_flight >= max_in_flight_per_address
    {
        return Err(Refusal::Crowded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::for_accounts(&ThrottleConfig::default())
    }

    #[test]
    fn five_failures_lock_for_thirty_seconds_then_double_up_to_an_hour() {
        let p = policy();
        assert_eq!(p.lock_seconds(4), 0);
        assert_eq!(p.lock_seconds(5), 30);
        assert_eq!(p.lock_seconds(6), 60);
        assert_eq!(p.lock_seconds(7), 120);
        assert_eq!(p.lock_seconds(12), 3600);
        assert_eq!(p.lock_seconds(1000), 3600);
    }

    #[test]
    fn account_failures_accumulate_in_a_row() {
        let p = policy();
        let mut row = None;
        for i in 1..=5 {
            row = Some(p.after_failure("user:a", row, 1000 + i));
        }
        let row = row.expect("row");
        assert_eq!(row.failures, 5);
        assert_eq!(retry_after(Some(&row), 1005), Some(30));
        assert_eq!(retry_after(Some(&row), 1035), None);
    }

    fn standing<'a>(
        policy: &'a Policy,
        row: Option<&'a FailureRow>,
        in_flight: i64,
    ) -> Standing<'a> {
        Standing {
            policy,
            row,
            in_flight,
        }
    }

    #[test]
    fn attempts_in_flight_count_as_failures_to_be() {
        let (accounts, addresses) = (policy(), Policy::for_addresses(&ThrottleConfig::default()));
        let ok = |account_failures: Option<&FailureRow>, in_flight| {
            admit(
                standing(&accounts, account_failures, in_flight),
                standing(&addresses, None, 0),
                4,
                1000,
            )
        };
        // Fresh: five may be checked at once, the sixth would come after a lock.
        for in_flight in 0..5 {
            assert_eq!(ok(None, in_flight), Ok(()), "{in_flight} in flight");
        }
        assert_eq!(ok(None, 5), Err(Refusal::Crowded));
        // Four failures: one more may be checked, alone.
        let four = (1..=4).fold(None, |row, i| {
            Some(accounts.after_failure("user:a", row, 900 + i))
        });
        assert_eq!(ok(four.as_ref(), 0), Ok(()));
        assert_eq!(ok(four.as_ref(), 1), Err(Refusal::Crowded));
        // Locked: refused with the time left; once the lock is over, one at a time.
        let five = Some(accounts.after_failure("user:a", four, 990));
        assert_eq!(ok(five.as_ref(), 0), Err(Refusal::Locked(20)));
        let after = |in_flight| {
            admit(
                standing(&accounts, five.as_ref(), in_flight),
                standing(&addresses, None, 0),
                4,
                1021,
            )
        };
        assert_eq!(after(0), Ok(()));
        assert_eq!(after(1), Err(Refusal::Crowded));
    }

    #[test]
    fn an_address_has_few_attempts_in_flight_and_its_window_counts() {
        let (accounts, addresses) = (policy(), Policy::for_addresses(&ThrottleConfig::default()));
        let nineteen = (0..19).fold(None, |row, i| {
            Some(addresses.after_failure("ip:x", row, 1000 + i))
        });
        let check = |row: Option<&FailureRow>, in_flight, now| {
            admit(
                standing(&accounts, None, 0),
                standing(&addresses, row, in_flight),
                4,
                now,
            )
        };
        assert_eq!(check(None, 3, 1100), Ok(()));
        assert_eq!(
            check(None, 4, 1100),
            Err(Refusal::Crowded),
            "four in flight"
        );
        assert_eq!(check(nineteen.as_ref(), 0, 1100), Ok(()));
        assert_eq!(check(nineteen.as_ref(), 1, 1100), Err(Refusal::Crowded));
        assert_eq!(
            check(nineteen.as_ref(), 1, 1000 + 901),
            Ok(()),
            "the window has passed"
        );
    }

    #[test]
    fn address_window_restarts_after_it_passes() {
        let p = Policy::for_addresses(&ThrottleConfig::default());
        let mut row = None;
        for i in 0..19 {
            row = Some(p.after_failure("ip:x", row, 1000 + i));
        }
        assert_eq!(row.as_ref().map(|r| r.locked_until), Some(1018));
        let twentieth = p.after_failure("ip:x", row.clone(), 1019);
        assert_eq!(twentieth.locked_until, 1019 + 30);
        let late = p.after_failure("ip:x", row, 1000 + 901);
        assert_eq!(late.failures, 1);
        assert_eq!(late.locked_until, 1901);
    }
}
