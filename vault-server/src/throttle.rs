//! Login throttling (SPEC §5), as pure policy over `db::throttle` rows. An account is
//! locked after N failures in a row (30 s, doubling per further failure, up to 1 h) and a
//! success clears it; an address is slowed the same way after M failures within a window,
//! across all accounts, and only time clears it.

use crate::config::ThrottleConfig;
use crate::db::throttle::FailureRow;

/// The subject key for an account.
pub fn account_subject(username: &str) -> String {
    format!("user:{username}")
}

/// The subject key for a source address.
pub fn ip_subject(ip: &std::net::IpAddr) -> String {
    format!("ip:{ip}")
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
