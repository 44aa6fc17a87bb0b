//! Presence: a user is online while they have a subscription on any instance of the
//! deployment (`db::presence`: each instance's users, and a heartbeat per instance). When
//! their first subscription opens or their last one closes, wherever it is, the time goes
//! into their profile (`last_seen_at`) and their mutual contacts hear of it on every
//! instance (through the relay). Two people who just became mutual contacts hear whether
//! the other is online. [`keep`] beats for this instance and sweeps the instances that
//! stopped, announcing their users offline.

use std::sync::Arc;
use std::time::Duration;

use vault_proto::proto::{ApiError, Event};

use crate::db;
use crate::state::ServerState;

/// Records that `user_id`'s first subscription on this instance opened, and announces
/// them online if no other instance had them.
pub async fn joined(state: &ServerState, user_id: i64, username: &str) -> Result<(), ApiError> {
    changed(state, user_id, username, true).await
}

/// Records that `user_id`'s last subscription on this instance closed, and announces
/// them offline if no other instance has them.
pub async fn left(state: &ServerState, user_id: i64, username: &str) -> Result<(), ApiError> {
    changed(state, user_id, username, false).await
}

/// Joins or leaves this instance's presence; announces only a change for the deployment.
async fn changed(
    state: &ServerState,
    user_id: i64,
    username: &str,
    here: bool,
) -> Result<(), ApiError> {
    let instance = state.relay.instance().to_owned();
    let flipped = state
        .db
        .run(move |c| {
            db::transaction(c, |c| {
                if here {
                    db::presence::join(c, &instance, user_id, db::now())
                } else {
                    db::presence::leave(c, &instance, user_id, db::now())
                }
            })
        })
        .await?;
    if flipped {
        announce(state, user_id, username, here).await?;
    }
    Ok(())
}

/// Records and announces that `user_id` came online or went offline.
async fn announce(
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

/// Tells each of two new mutual contacts whether the other is online (the change itself
/// is made: a failure here is only logged).
pub async fn introduce(state: &ServerState, a: (i64, &str), b: (i64, &str)) {
    let ids = [a.0, b.0];
    let online: Result<_, db::DbError> = state
        .db
        .run(move |c| db::presence::online_among(c, &ids, db::now()))
        .await;
    let online = match online {
        Ok(online) => online,
        Err(e) => {
            tracing::warn!(error = %e, "presence: cannot tell new contacts who is online");
            return;
        }
    };
    for ((who, name), to) in [(a, b.0), (b, a.0)] {
        if online.contains(&who) {
            let event = Event::Presence {
                username: name.to_owned(),
                online: true,
                last_seen: None,
            };
            crate::relay::send(state, to, &event);
        }
    }
}

/// For the server's lifetime: beats for this instance every `db::presence::BEAT_S`, and
/// (one instance at a time) sweeps the instances that stopped beating, announcing their
/// users offline.
pub async fn keep(state: Arc<ServerState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(db::presence::BEAT_S as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let instance = state.relay.instance().to_owned();
        let beaten: Result<(bool, Option<Vec<i64>>), db::DbError> = state
            .db
            .run(move |c| {
                let now = db::now();
                let known = db::presence::beat(c, &instance, now)?;
                let swept = db::exclusively(c, "presence sweep", |c| {
                    db::transaction(c, |c| db::presence::sweep(c, now))
                })?
                .transpose()?;
                Ok((known, swept))
            })
            .await;
        match beaten {
            Ok((known, swept)) => {
                if !known {
                    rejoin(&state).await;
                }
                offline(&state, swept.unwrap_or_default()).await;
            }
            Err(e) => tracing::warn!(error = %e, "presence: could not beat or sweep"),
        }
    }
}

/// After another instance swept this one's rows (its beats failed for a while: a database
/// outage, a paused process), records again who listens here, and announces those who
/// thereby come online.
pub(crate) async fn rejoin(state: &ServerState) {
    for user in state.chat.hub.users() {
        let instance = state.relay.instance().to_owned();
        let back: Result<(bool, Option<String>), db::DbError> = state
            .db
            .run(move |c| {
                let came =
                    db::transaction(c, |c| db::presence::join(c, &instance, user, db::now()))?;
                Ok((came, db::users::by_id(c, user)?.map(|u| u.username)))
            })
            .await;
        let result = match back {
            Ok((true, Some(name))) => announce(state, user, &name, true).await,
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(code = e.code.as_str(), "could not announce presence");
        }
    }
}

/// At shutdown, after the subscriptions closed: removes this instance's row (and any
/// presence left on it), announcing those users offline.
pub async fn stop(state: &ServerState) {
    let instance = state.relay.instance().to_owned();
    let gone: Result<Vec<i64>, db::DbError> = state
        .db
        .run(move |c| db::transaction(c, |c| db::presence::stop(c, &instance, db::now())))
        .await;
    match gone {
        Ok(gone) => offline(state, gone).await,
        Err(e) => tracing::warn!(error = %e, "presence: could not remove this instance"),
    }
}

/// Announces `users` offline (their instance stopped).
async fn offline(state: &ServerState, users: Vec<i64>) {
    for user in users {
        let name: Result<Option<String>, ApiError> = state
            .db
            .run(move |c| Ok(db::users::by_id(c, user)?.map(|u| u.username)))
            .await;
        let result = match name {
            Ok(Some(name)) => announce(state, user, &name, false).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(code = e.code.as_str(), "could not announce presence");
        }
    }
}
