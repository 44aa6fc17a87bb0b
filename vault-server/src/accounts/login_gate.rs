//! How many logins from one client address (`net::address::client_key`) this server
//! instance checks at once. A login over the limit is answered "busy, retry" before it
//! touches the database or the password hash, so a flood from a few addresses cannot queue
//! ahead of everyone else's logins. (The database's count of attempts in flight,
//! `accounts::attempts`, holds the same limit across instances.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Logins in progress per address.
#[derive(Debug)]
pub struct LoginGate {
    per_address: u32,
    in_flight: Mutex<HashMap<IpAddr, u32>>,
}

/// One login in progress; dropping it lets the next one in.
#[derive(Debug)]
pub struct LoginPass<'a> {
    gate: &'a LoginGate,
    key: IpAddr,
}

impl LoginGate {
    pub fn new(per_address: u32) -> Self {
        LoginGate {
            per_address,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pass for one login from `key`, or `None` when it has the maximum in progress.
    pub fn enter(&self, key: IpAddr) -> Option<LoginPass<'_>> {
        let mut map = self.map();
        let count = map.entry(key).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(LoginPass { gate: self, key })
    }
}

impl Drop for LoginPass<'_> {
    fn drop(&mut self) {
        let mut map = self.gate.map();
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_few_passes() {
        let gate = LoginGate::new(2);
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let first = gate.enter(a).expect("first");
        let _second = gate.enter(a).expect("second");
        assert!(
            gate.enter(a).is_none(),
            "a third from the same address waits"
        );
        let _other = gate.enter(b).expect("another address is not affected");
        drop(first);
        assert!(
            gate.enter(a).is_some(),
            "a pass returned lets the next one in"
        );
    }
}
