//! The sync state reader (`vault-client/src/sync/state.rs`): `SyncState::parse` on the
//! bytes of a `state.json`, then `SyncState::replay` of a journal, as `StateFile::load`
//! does with the files of `LOCAL/.vault-sync/`.
//!
//! Input: `state.json bytes ‖ 0x00 ‖ journal bytes` (no 0x00: no journal). A state that
//! parses writes out and parses back to the same state; every journal line that parses as
//! an entry writes out and parses back to the same entry; replaying the journal a second
//! time changes nothing (what `StateFile::save` relies on).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_client::sync::state::{Entry, SyncState};

fn written(state: &SyncState) -> String {
    serde_json::to_string(state).expect("a state writes out")
}

fuzz_target!(|data: &[u8]| {
    let (state, journal) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    for line in journal.split(|&b| b == b'\n') {
        if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
            let text = serde_json::to_string(&entry).expect("an entry writes out");
            let back: Entry = serde_json::from_str(&text).expect("an entry reads back");
            assert_eq!(back, entry);
        }
    }
    let Ok(mut state) = SyncState::parse(state) else {
        return;
    };
    let text = written(&state);
    let back = SyncState::parse(text.as_bytes()).expect("a written state parses");
    assert_eq!(written(&back), text, "a state reads back as another");
    state.replay(journal);
    let once = written(&state);
    state.replay(journal);
    assert_eq!(
        written(&state),
        once,
        "replaying the journal again changed the state"
    );
});
