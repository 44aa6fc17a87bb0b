//! Subscriptions: the backlog then new messages at once, every subscription of a user,
//! group members, presence and contact events, and the end of a stream.

use std::time::Duration;

use diesel::prelude::*;
use vault_proto::proto::{ContactState, ErrorCode, Event, Request};

use super::{ChatCalls, direct, fixture, group, texts, to_group};
use crate::chat::subscribe;
use crate::db::schema::chat_deliveries;
use crate::testing::{R, err};

#[tokio::test]
async fn a_subscriber_gets_the_backlog_first_then_new_messages_at_once() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let first = f
        .send("alice", direct("alice", "bob", "while away 1"))
        .await?;
    f.send("alice", direct("alice", "bob", "while away 2"))
        .await?;

    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    let m = bob.message().await?;
    assert_eq!(m.id, first);
    assert_eq!(m.message.sender, "alice");
    assert_eq!(m.sender_key.as_ref(), &[1u8; 24]);
    assert_eq!(
        texts(&[m, bob.message().await?]),
        ["while away 1", "while away 2"]
    );
    bob.quiet(Duration::from_millis(100)).await?;

    // A new message arrives well before the 2-second poll: the hub woke the subscription.
    let sent_at = std::time::Instant::now();
    let id = f.send("alice", direct("alice", "bob", "live")).await?;
    let m = bob.message().await?;
    assert!(
        sent_at.elapsed() < Duration::from_millis(1000),
        "{:?}",
        sent_at.elapsed()
    );
    assert_eq!(m.id, id);
    assert_eq!(bob.stop().await?, subscribe::Ended::Closed);

    // What a subscription carried is not carried again; a new one gets only what is new.
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    bob.quiet(Duration::from_millis(200)).await?;
    f.send("alice", direct("alice", "bob", "next")).await?;
    assert_eq!(texts(&[bob.message().await?]), ["next"]);
    bob.stop().await?;
    Ok(())
}

#[tokio::test]
async fn every_subscription_of_a_user_gets_every_message() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let mut sender = f.subscribe("alice");
    sender.subscribed().await?;
    let mut one = f.subscribe("bob");
    let mut two = f.subscribe("bob");
    for s in [&mut one, &mut two] {
        s.subscribed().await?;
    }
    assert!(matches!(
        sender.event().await?,
        Event::Presence { online: true, .. }
    ));
    for i in 0..3 {
        f.send("alice", direct("alice", "bob", &format!("m{i}")))
            .await?;
    }
    for s in [&mut one, &mut two] {
        let got = [s.message().await?, s.message().await?, s.message().await?];
        assert_eq!(texts(&got), ["m0", "m1", "m2"]);
    }
    // The sender's own subscriptions see what they sent (from another session, too).
    assert_eq!(texts(&[sender.message().await?]), ["m0"]);
    for s in [one, two, sender] {
        s.stop().await?;
    }
    let mut conn = f.state.db.conn()?;
    let undelivered: i64 = chat_deliveries::table
        .filter(chat_deliveries::delivered.eq(false))
        .count()
        .get_result(&mut *conn)?;
    assert_eq!(undelivered, 0);
    Ok(())
}

#[tokio::test]
async fn group_messages_reach_every_subscribed_member() -> R<()> {
    let f = fixture()?;
    let id = f.team("alice", "team", &["bob", "carol"]).await?;
    let mut subs = Vec::new();
    for who in ["alice", "bob", "carol", "dave"] {
        let mut s = f.subscribe(who);
        s.subscribed().await?;
        subs.push(s);
    }
    f.send("alice", to_group("alice", "team", id, 0, "to all"))
        .await?;
    for s in subs.iter_mut().take(3) {
        let m = s.message().await?;
        assert_eq!(m.message.target, group("team"));
        assert_eq!(m.message.group_id, Some(id));
    }
    subs[3].quiet(Duration::from_millis(300)).await?;
    for s in subs {
        s.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn presence_and_contact_events_go_to_the_right_people() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.add("carol", "alice").await?;
    let mut alice = f.subscribe("alice");
    alice.subscribed().await?;
    let mut carol = f.subscribe("carol");
    carol.subscribed().await?;

    // Bob comes online: alice (mutual) hears it, carol (a request only) does not.
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    match alice.event().await? {
        Event::Presence {
            username,
            online: true,
            last_seen: None,
        } => assert_eq!(username, "bob"),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    // A second subscription of bob's is no news.
    let mut bob2 = f.subscribe("bob");
    bob2.subscribed().await?;
    alice.quiet(Duration::from_millis(200)).await?;
    bob2.stop().await?;
    alice.quiet(Duration::from_millis(200)).await?;
    bob.stop().await?;
    match alice.event().await? {
        Event::Presence {
            username,
            online: false,
            last_seen: Some(_),
        } => assert_eq!(username, "bob"),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    carol.quiet(Duration::from_millis(200)).await?;

    // Requests and answers reach the other side.
    f.add("dave", "alice").await?;
    assert_eq!(
        alice.event().await?,
        Event::ContactRequest {
            from: "dave".into()
        }
    );
    f.accept("alice", "carol").await?;
    assert_eq!(
        carol.event().await?,
        Event::ContactChanged {
            username: "alice".into(),
            state: Some(ContactState::Contact)
        }
    );
    // New mutual contacts learn that the other is online.
    assert_eq!(
        carol.event().await?,
        Event::Presence {
            username: "alice".into(),
            online: true,
            last_seen: None
        }
    );
    assert_eq!(
        alice.event().await?,
        Event::Presence {
            username: "carol".into(),
            online: true,
            last_seen: None
        }
    );
    f.call(
        "alice",
        Request::ContactRemove {
            username: "carol".into(),
        },
    )
    .await?;
    assert_eq!(
        carol.event().await?,
        Event::ContactChanged {
            username: "alice".into(),
            state: None
        }
    );
    alice.stop().await?;
    carol.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_subscription_needs_nothing_but_ends_with_its_stream() -> R<()> {
    let f = fixture()?;
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    bob.quiet(Duration::from_millis(50)).await?;
    assert!(f.state.chat.hub.listens_here(f.id("bob")));
    assert_eq!(bob.stop().await?, subscribe::Ended::Closed);
    assert!(!f.state.chat.hub.listens_here(f.id("bob")));
    // Subscribe is refused as a one-frame request.
    let e = err(f.call("bob", Request::Subscribe).await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    Ok(())
}

/// An instance whose beats stopped for a while (a database outage, a paused process) is
/// swept by another, which announces its users offline; at its next beat it finds its row
/// gone, records again who listens on it and announces them online.
#[tokio::test]
async fn an_instance_swept_while_it_ran_records_its_listeners_again() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let mut alice = f.subscribe("alice");
    alice.subscribed().await?;
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    alice.event().await?; // bob online
    let bob_id = f.id("bob");
    assert_eq!(f.state.chat.hub.users().len(), 2);

    let instance = f.state.relay.instance().to_owned();
    let mut conn = f.state.db.conn()?;
    crate::db::transaction(&mut conn, |c| {
        crate::db::presence::stop(c, &instance, crate::db::now())
    })?;
    assert!(!crate::db::presence::is_online(
        &mut conn,
        bob_id,
        crate::db::now()
    )?);
    drop(conn);

    crate::chat::presence::rejoin(&f.state).await;
    let mut conn = f.state.db.conn()?;
    assert!(crate::db::presence::is_online(
        &mut conn,
        bob_id,
        crate::db::now()
    )?);
    match alice.event().await? {
        Event::Presence {
            username,
            online: true,
            ..
        } => assert_eq!(username, "bob"),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    bob.stop().await?;
    alice.stop().await?;
    Ok(())
}
