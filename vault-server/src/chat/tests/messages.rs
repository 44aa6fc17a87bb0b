//! Messages: what sending refuses (direct and to a group) with nothing stored, the flood
//! limit, history in pages, the inbox, and the chat a deleted account or group takes with
//! it.

use diesel::prelude::*;
use vault_proto::proto::{ApiError, ByteBuf, ChatTarget, ErrorCode, Request, Rotation};

use super::{ChatCalls, direct, envelope, fixture, fixture_with, group, texts, to_group, user};
use crate::db;
use crate::db::schema::{chat_deliveries, contacts, profiles};
use crate::maintenance::stats::message_stats;
use crate::testing::{R, err};

#[tokio::test]
async fn direct_messages_are_refused_with_nothing_stored() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.add("alice", "carol").await?;

    let refused = |e: ApiError, code: ErrorCode, says: &str| {
        assert_eq!(e.code, code, "{e}");
        assert!(e.message.contains(says), "{e}");
    };
    refused(
        err(f.send("alice", direct("alice", "dave", "hi")).await),
        ErrorCode::Forbidden,
        "dave is not your contact: `vault contact add dave`",
    );
    refused(
        err(f.send("alice", direct("alice", "carol", "hi")).await),
        ErrorCode::Forbidden,
        "carol is not your contact",
    );
    refused(
        err(f.send("carol", direct("carol", "alice", "hi")).await),
        ErrorCode::Forbidden,
        "alice is not your contact",
    );
    refused(
        err(f.send("alice", direct("alice", "nobody", "hi")).await),
        ErrorCode::NotFound,
        "no user named nobody",
    );
    refused(
        err(f.send("alice", direct("bob", "alice", "hi")).await),
        ErrorCode::BadRequest,
        "names sender bob but you are logged in as alice",
    );
    let mut m = direct("alice", "bob", "hi");
    m.keys.pop();
    refused(
        err(f.send("alice", m).await),
        ErrorCode::BadRequest,
        "exactly two readers",
    );
    let mut m = direct("alice", "bob", "hi");
    m.sent_at_ms -= 11 * 60 * 1000;
    refused(
        err(f.send("alice", m).await),
        ErrorCode::BadRequest,
        "behind the server's clock",
    );
    let mut m = direct("alice", "bob", "hi");
    m.ciphertext = ByteBuf::from(vec![0; 65536 + 257]);
    refused(
        err(f.send("alice", m).await),
        ErrorCode::TooLarge,
        "messages have at most 65536 bytes of text",
    );
    // The largest allowed passes.
    let mut m = direct("alice", "bob", "hi");
    m.ciphertext = ByteBuf::from(vec![0; 65536 + 256]);
    f.send("alice", m).await?;
    assert_eq!(f.stored()?, (1, 2));
    Ok(())
}

#[tokio::test]
async fn a_flood_is_throttled_with_nothing_stored() -> R<()> {
    let f = fixture_with(|c| c.chat.messages_per_minute = 3)?;
    f.befriend("alice", "bob").await?;
    for i in 0..3 {
        f.send("alice", direct("alice", "bob", &format!("m{i}")))
            .await?;
    }
    let e = err(f.send("alice", direct("alice", "bob", "m3")).await);
    assert_eq!(e.code, ErrorCode::Throttled { retry_after_s: 20 });
    assert_eq!(e.message, "too many messages: wait 20 s");
    assert_eq!(f.stored()?, (3, 6));
    // Others are not held back.
    f.send("bob", direct("bob", "alice", "hello")).await?;
    Ok(())
}

#[tokio::test]
async fn group_messages_need_membership_and_the_key_in_force() -> R<()> {
    let f = fixture()?;
    let id = f.team("alice", "team", &["bob", "carol"]).await?;
    let sent = f
        .send("bob", to_group("bob", "team", id, 0, "hello"))
        .await?;
    // One delivery per member; the sender's is read and delivered.
    let mut conn = f.state.db.conn()?;
    let rows: Vec<(i64, bool, bool)> = chat_deliveries::table
        .filter(chat_deliveries::message_id.eq(sent))
        .order(chat_deliveries::user_id.asc())
        .select((
            chat_deliveries::user_id,
            chat_deliveries::delivered,
            chat_deliveries::read,
        ))
        .load(&mut *conn)?;
    drop(conn);
    assert_eq!(
        rows,
        [
            (f.id("alice"), false, false),
            (f.id("bob"), true, true),
            (f.id("carol"), false, false)
        ]
    );
    assert_eq!(f.stored()?, (1, 3));

    let e = err(f.send("dave", to_group("dave", "team", id, 0, "x")).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(e.message, "you are not a member of group team");
    let e = err(f.send("bob", to_group("bob", "nope", id, 0, "x")).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = err(f
        .send("bob", to_group("bob", "team", id + 100, 0, "x"))
        .await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains(&format!("group team has id {id}")),
        "{e}"
    );
    let e = err(f.send("bob", to_group("bob", "team", id, 1, "x")).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(e.message, "the key of group team changed; send again");

    // A removed member is refused at once; the key moves on and old generations are stale.
    let rotation = Rotation {
        generation: 1,
        envelopes: vec![envelope("alice", 1), envelope("bob", 1)],
    };
    f.ok(
        "alice",
        Request::GroupRemove {
            group: "team".into(),
            username: "carol".into(),
            rotation: Some(rotation),
        },
    )
    .await?;
    let e = err(f.send("carol", to_group("carol", "team", id, 1, "x")).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = err(f.send("bob", to_group("bob", "team", id, 0, "x")).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(f.stored()?, (1, 3));
    f.send("bob", to_group("bob", "team", id, 1, "again"))
        .await?;
    assert_eq!(f.stored()?, (2, 5));
    // The removed member's history of the group is closed to them.
    let e = err(f.history("carol", group("team"), 10, None).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    Ok(())
}

#[tokio::test]
async fn history_is_newest_first_in_pages_and_marks_read() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (from, to) = if i % 2 == 0 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        ids.push(f.send(from, direct(from, to, &format!("m{i}"))).await?);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let page = f.history("bob", user("alice"), 2, None).await?;
    assert_eq!(texts(&page), ["m4", "m3"]);
    assert_eq!(page[0].message.sender, "alice");
    assert_eq!(page[0].sender_key.as_ref(), &[1u8; 24]);
    assert_eq!(page[0].id, ids[4]);
    let page = f.history("bob", user("alice"), 2, Some(page[1].id)).await?;
    assert_eq!(texts(&page), ["m2", "m1"]);
    // Bob read m4, m3 (his own), m2: one unread (m0) left for him; alice has read none.
    let inbox = f.inbox("bob").await?;
    assert_eq!(inbox[0].unread, 1);
    assert_eq!(f.inbox("alice").await?[0].unread, 2);
    let page = f.history("bob", user("alice"), 500, Some(ids[1])).await?;
    assert_eq!(texts(&page), ["m0"]);
    assert_eq!(f.inbox("bob").await?[0].unread, 0);
    // The message is stored as it came.
    let all = f.history("alice", user("bob"), 10, None).await?;
    assert_eq!(all.len(), 5);
    let mut want = direct("alice", "bob", "m0");
    want.sent_at_ms = all[4].message.sent_at_ms;
    assert_eq!(all[4].message, want);

    // Paging limits, and who may read what.
    for limit in [0, 501] {
        let e = err(f.history("bob", user("alice"), limit, None).await);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("1 to 500"), "{e}");
    }
    assert!(
        f.history("carol", user("alice"), 10, None)
            .await?
            .is_empty()
    );
    let e = err(f.history("bob", user("nobody"), 10, None).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    // A direct conversation stays readable after the contact ends.
    f.call(
        "alice",
        Request::ContactRemove {
            username: "bob".into(),
        },
    )
    .await?;
    assert_eq!(f.history("bob", user("alice"), 10, None).await?.len(), 5);
    Ok(())
}

#[tokio::test]
async fn the_inbox_counts_unread_and_puts_the_newest_conversation_first() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.befriend("alice", "carol").await?;
    let id = f.team("dave", "team", &["alice"]).await?;
    f.send("bob", direct("bob", "alice", "b1")).await?;
    f.send("bob", direct("bob", "alice", "b2")).await?;
    let c1 = f.send("carol", direct("carol", "alice", "c1")).await?;
    let t1 = f
        .send("dave", to_group("dave", "team", id, 0, "t1"))
        .await?;
    let a1 = f.send("alice", direct("alice", "bob", "a1")).await?;
    let inbox = f.inbox("alice").await?;
    let view: Vec<(ChatTarget, i64, u64)> = inbox
        .iter()
        .map(|c| (c.target.clone(), c.last_id, c.unread))
        .collect();
    assert_eq!(
        view,
        [
            (user("bob"), a1, 2),
            (group("team"), t1, 1),
            (user("carol"), c1, 1)
        ]
    );
    assert!(inbox.iter().all(|c| c.last_received_at_ms > 0));
    // Reading one conversation clears its count only; a renamed group shows its new name.
    f.history("alice", user("bob"), 10, None).await?;
    f.ok(
        "dave",
        Request::GroupRename {
            group: "team".into(),
            new_name: "crew".into(),
        },
    )
    .await?;
    let unread: Vec<(ChatTarget, u64)> = f
        .inbox("alice")
        .await?
        .into_iter()
        .map(|c| (c.target, c.unread))
        .collect();
    assert_eq!(
        unread,
        [(user("bob"), 0), (group("crew"), 1), (user("carol"), 1)]
    );
    assert!(f.inbox("erin").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn deleting_an_account_or_a_group_removes_its_chat() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.befriend("bob", "carol").await?;
    f.add("dave", "bob").await?;
    f.ok(
        "bob",
        Request::ProfileSet {
            display_name: Some("B".into()),
        },
    )
    .await?;
    let id = f.team("alice", "team", &["bob"]).await?;
    f.send("alice", direct("alice", "bob", "a→b")).await?;
    f.send("bob", direct("bob", "carol", "b→c")).await?;
    f.send("bob", to_group("bob", "team", id, 0, "in team"))
        .await?;
    assert_eq!(f.stored()?, (3, 6));
    let stats = {
        let mut conn = f.state.db.conn()?;
        message_stats(&mut conn, db::now())?
    };
    assert_eq!((stats.total, stats.last_24h), (3, 3));
    let later = {
        let mut conn = f.state.db.conn()?;
        message_stats(&mut conn, db::now() + 25 * 3600)?
    };
    assert_eq!((later.total, later.last_24h), (3, 0));

    // The group goes with its messages and deliveries.
    f.ok(
        "alice",
        Request::GroupDelete {
            group: "team".into(),
        },
    )
    .await?;
    assert_eq!(f.stored()?, (2, 4));

    // Bob's account goes: his contacts (both sides), profile and deliveries; a message
    // that no one can read any more goes, one the other side still has stays.
    let bob = f.id("bob");
    {
        let mut conn = f.state.db.conn()?;
        let removed = db::chat::delete_user(&mut conn, bob)?;
        assert_eq!(removed.contacts, 6);
        assert_eq!(removed.deliveries, 2);
        assert_eq!(removed.messages, 0);
        let left: i64 = contacts::table.count().get_result(&mut *conn)?;
        assert_eq!(left, 0);
        let profile: i64 = profiles::table
            .filter(profiles::user_id.eq(bob))
            .count()
            .get_result(&mut *conn)?;
        assert_eq!(profile, 0);
        db::users::delete(&mut conn, bob)?;
    }
    assert_eq!(f.stored()?, (2, 2));
    // Alice and carol keep their side; the conversation keeps its name.
    let inbox = f.inbox("carol").await?;
    assert_eq!(inbox[0].target, user("bob"));
    let inbox = f.inbox("alice").await?;
    assert_eq!(inbox[0].target, user("bob"));
    {
        let mut conn = f.state.db.conn()?;
        let alice = f.id("alice");
        let carol = f.id("carol");
        db::chat::delete_user(&mut conn, alice)?;
        let removed = db::chat::delete_user(&mut conn, carol)?;
        assert_eq!(removed.messages, 1);
    }
    assert_eq!(f.stored()?, (0, 0));
    Ok(())
}
