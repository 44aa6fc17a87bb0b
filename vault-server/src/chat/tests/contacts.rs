//! Contacts and profiles: requests asked, accepted, rejected and removed on both sides,
//! and what the contact list shows (names, keys, presence of mutual contacts only).

use vault_proto::proto::{ContactState, ErrorCode, Request, Response};

use super::{ChatCalls, fixture};
use crate::testing::{R, err};

#[tokio::test]
async fn contacts_are_asked_accepted_rejected_and_removed_on_both_sides() -> R<()> {
    let f = fixture()?;
    use ContactState::{Contact, RequestReceived, RequestSent};
    let pair = |name: &str, s| vec![(name.to_owned(), s)];

    f.add("alice", "bob").await?;
    assert_eq!(f.states("alice").await?, pair("bob", RequestSent));
    assert_eq!(f.states("bob").await?, pair("alice", RequestReceived));
    // Asking again changes nothing; accepting one's own request is not possible.
    f.add("alice", "bob").await?;
    let e = err(f.accept("alice", "bob").await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("no contact request from bob"), "{e}");
    f.accept("bob", "alice").await?;
    assert_eq!(f.states("alice").await?, pair("bob", Contact));
    assert_eq!(f.states("bob").await?, pair("alice", Contact));
    let e = err(f.add("bob", "alice").await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("alice is already your contact"), "{e}");

    // A rejected request leaves nothing on either side.
    f.add("carol", "alice").await?;
    f.call(
        "alice",
        Request::ContactReject {
            username: "carol".into(),
        },
    )
    .await?;
    assert!(f.states("carol").await?.is_empty());
    assert_eq!(f.states("alice").await?, pair("bob", Contact));

    // Adding someone who asked first makes a mutual contact at once.
    f.add("dave", "erin").await?;
    f.add("erin", "dave").await?;
    assert_eq!(f.states("dave").await?, pair("erin", Contact));
    assert_eq!(f.states("erin").await?, pair("dave", Contact));

    // Either side removes, in any state; both rows go.
    f.call(
        "bob",
        Request::ContactRemove {
            username: "alice".into(),
        },
    )
    .await?;
    assert!(f.states("alice").await?.is_empty());
    assert!(f.states("bob").await?.is_empty());
    f.add("carol", "dave").await?;
    f.call(
        "dave",
        Request::ContactRemove {
            username: "carol".into(),
        },
    )
    .await?;
    assert!(f.states("carol").await?.is_empty());
    let e = err(f
        .call(
            "dave",
            Request::ContactRemove {
                username: "carol".into(),
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::NotFound);

    // Unknown users, oneself, and names that cannot be usernames.
    let e = err(f.add("alice", "nobody").await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("no user named nobody"), "{e}");
    assert_eq!(
        err(f.add("alice", "alice").await).code,
        ErrorCode::BadRequest
    );
    assert_eq!(err(f.add("alice", "a;b").await).code, ErrorCode::BadRequest);
    // Names are case-folded.
    f.add("alice", "BOB").await?;
    assert_eq!(f.states("bob").await?, pair("alice", RequestReceived));
    Ok(())
}

#[tokio::test]
async fn the_contact_list_shows_names_keys_and_presence_of_mutual_contacts_only() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.add("alice", "carol").await?;
    for (who, name) in [("bob", "Bob B."), ("carol", "  Carol  ")] {
        f.ok(
            who,
            Request::ProfileSet {
                display_name: Some(name.into()),
            },
        )
        .await?;
    }
    let mut bob_sub = f.subscribe("bob");
    bob_sub.subscribed().await?;
    let mut carol_sub = f.subscribe("carol");
    carol_sub.subscribed().await?;
    let list = f.contacts("alice").await?;
    assert_eq!(list.len(), 2);
    let (bob, carol) = (&list[0], &list[1]);
    assert_eq!(bob.username, "bob");
    assert_eq!(bob.display_name.as_deref(), Some("Bob B."));
    assert!(bob.online);
    assert!(bob.last_seen.is_some());
    assert_eq!(bob.public_key.as_ref(), &[2u8; 24]);
    assert_eq!(carol.display_name.as_deref(), Some("Carol"));
    assert_eq!(carol.state, ContactState::RequestSent);
    assert!(!carol.online, "presence is for mutual contacts only");
    assert_eq!(carol.last_seen, None);
    bob_sub.stop().await?;
    carol_sub.stop().await?;
    assert!(!f.contacts("alice").await?[0].online);

    // Clearing the name; bad names are refused.
    f.ok("bob", Request::ProfileSet { display_name: None })
        .await?;
    assert_eq!(f.contacts("alice").await?[0].display_name, None);
    let e = err(f
        .call(
            "bob",
            Request::ProfileSet {
                display_name: Some("a\nb".into()),
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    Ok(())
}

#[tokio::test]
async fn contact_get_answers_the_one_relationship_or_none() -> R<()> {
    let f = fixture()?;
    f.add("alice", "bob").await?;
    f.accept("bob", "alice").await?;
    f.add("alice", "carol").await?;
    let get = |who: &'static str, other: &'static str| {
        let f = &f;
        async move {
            match f
                .ok(
                    who,
                    Request::ContactGet {
                        username: other.into(),
                    },
                )
                .await?
            {
                Response::Contacts { contacts } => Ok::<_, Box<dyn std::error::Error>>(
                    contacts
                        .into_iter()
                        .map(|c| (c.username, c.state))
                        .collect::<Vec<_>>(),
                ),
                other => Err(format!("unexpected {other:?}").into()),
            }
        }
    };
    assert_eq!(
        get("alice", "Bob").await?,
        [("bob".to_owned(), ContactState::Contact)]
    );
    assert_eq!(
        get("alice", "carol").await?,
        [("carol".to_owned(), ContactState::RequestSent)]
    );
    assert!(get("bob", "carol").await?.is_empty());
    assert!(get("alice", "nobody").await?.is_empty());
    Ok(())
}
