//! Presence: a user is online while they have a subscription on this instance. When their
//! first subscription opens or their last one closes, the time goes into their profile
//! (`last_seen_at`) and their mutual contacts who are subscribed here hear of it. Two
//! people who just became mutual contacts hear whether the other is online.

use vault_proto::proto::{ApiError, Event};

use crate::db;
use crate::state::ServerState;

/// Records and announces that `user_id` came online or went offline.
pub async fn announce(
    state: &ServerState,
    user_id: i64,
    username: &str,
    online: bool,
) -> Result<(), ApiError> {
    let now = db::now();
    let contacts = state
        .db
        .run(move |c| {
            db::chat::set_last_seen(c, user_id, now)?;
            db::chat::mutual_ids(c, user_id)
        })
        .await?;
    let event = Event::Presence {
        username: username.to_owned(),
        online,
        last_seen: (!online).then_some(now),
    };
    for contact in contacts {
        crate::relay::send(state, contact, &event);
    }
    Ok(())
}

/// Tells each of two new mutual contacts whether the other is online here.
pub fn introduce(state: &ServerState, a: (i64, &str), b: (i64, &str)) {
    for ((who, name), to) in [(a, b.0), (b, a.0)] {
        if state.chat.hub.is_online(who) {
            let event = Event::Presence {
                username: name.to_owned(),
                online: true,
                last_seen: None,
            };
            crate::relay::send(state, to, &event);
        }
    }
}
