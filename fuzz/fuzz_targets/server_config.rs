//! The server configuration (`vault-server/src/config.rs`): `Config::from_text`, what
//! `Config::load` does once the file is read, with the file's text and `VAULT_*`
//! variables.
//!
//! Input: `file text ‖ 0x00 ‖ environment` (lines `NAME=VALUE`; no 0x00: no variables).
//! A configuration that loads holds the values the checks promise, and written out as
//! TOML it loads again to the same configuration.

#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vault_server::config::{Config, Overrides};

fn load(text: &str, env: &HashMap<String, String>) -> Option<Config> {
    Config::from_text(
        Some((Path::new("vault.toml"), text)),
        |name| env.get(name).cloned(),
        &Overrides::default(),
    )
    .ok()
}

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(file), Ok(env)) = (std::str::from_utf8(file), std::str::from_utf8(env)) else {
        return;
    };
    let env: HashMap<String, String> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Some(config) = load(file, &env) else {
        return;
    };
    assert!(config.kdf.validate().is_ok() && config.auth_hash.validate().is_ok());
    assert!(config.limits.concurrent_streams > 0 && config.limits.requests_per_second > 0);
    assert!(config.limits.connections_per_ip > 0);
    assert!(config.chat.max_text_bytes > 0 && config.chat.messages_per_minute > 0);
    assert!(config.throttle.account_failures > 0 && config.throttle.ip_failures > 0);
    assert_eq!(config.storage.kind, "fs");
    // Written out (where TOML can hold every value: its integers are signed 64-bit), the
    // configuration loads again as itself.
    let Ok(text) = toml::to_string(&config) else {
        return;
    };
    let again = load(&text, &HashMap::new()).expect("a written configuration loads");
    assert_eq!(toml::to_string(&again).expect("writes"), text);
});
