//! What the contact and chat commands print: one line per message or event for people,
//! JSON for scripts. Text from other people is printed with control and bidirectional
//! formatting characters escaped (in `$'…'`, [`crate::escape`]), so a message cannot move
//! the cursor, recolour the terminal, span lines or disguise who sent it.

use serde_json::{Value, json};
use vault_client::chat::target::show;
use vault_client::chat::{Content, ListenEvent, Received};
use vault_core::calendar::civil_from_days;
use vault_core::proto::chat::{ChatTarget, ContactInfo, ContactState, Conversation};
use vault_core::units::format_size;

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `text` on one line, quoted with its control and bidirectional formatting characters
/// escaped when it has any ([`crate::escape::shown`]).
pub fn clean(text: &str) -> String {
    crate::escape::shown(text).into_owned()
}

/// A user as the caller sees them: `you` for themselves.
fn who(user: &str, me: &str) -> String {
    if user == me {
        "you".into()
    } else {
        clean(user)
    }
}

/// `2026-12-02 01:02:03 alice → you: text` or `2026-12-02 01:02:03 @team alice: text`; a
/// message that failed its checks shows why in place of the text. A file the message
/// carries follows the text: `[file NAME, SIZE: vault chat fetch ID]`.
pub fn message_line(m: &Received, me: &str) -> String {
    let when = time_ms(m.received_at_ms);
    let from = who(&m.from, me);
    let mut said = match &m.content {
        Content::Text(text) => clean(text),
        Content::Refused(reason) => format!("[refused: {}]", clean(reason)),
    };
    if let Some(file) = &m.file {
        let shown = format!(
            "[file {}, {}: vault chat fetch {}]",
            clean(&file.name),
            format_size(file.size),
            m.id
        );
        said = if said.is_empty() {
            shown
        } else {
            format!("{said} {shown}")
        };
    }
    match &m.target {
        ChatTarget::User { username } => format!("{when} {from} → {}: {said}", who(username, me)),
        ChatTarget::Group { name } => format!("{when} @{} {from}: {said}", clean(name)),
    }
}

/// A message as JSON: `verified` with `text`, or not with `error` (and no text).
pub fn message_json(m: &Received) -> Value {
    let (to, group) = match &m.target {
        ChatTarget::User { username } => (Some(username.as_str()), None),
        ChatTarget::Group { name } => (None, Some(name.as_str())),
    };
    let mut value = json!({
        "type": "message",
        "id": m.id,
        "from": m.from,
        "to": to,
        "group": group,
        "sent_at_ms": m.sent_at_ms,
        "received_at_ms": m.received_at_ms,
    });
    if let Value::Object(fields) = &mut value {
        match &m.content {
            Content::Text(text) => {
                fields.insert("text".into(), json!(text));
                fields.insert("verified".into(), json!(true));
                if let Some(file) = &m.file {
                    fields.insert("file".into(), json!({"name": file.name, "size": file.size}));
                }
            }
            Content::Refused(reason) => {
                fields.insert("verified".into(), json!(false));
                fields.insert("error".into(), json!(reason));
            }
        }
    }
    value
}

fn state_name(state: ContactState) -> &'static str {
    match state {
        ContactState::Contact => "contact",
        ContactState::RequestSent => "request_sent",
        ContactState::RequestReceived => "request_received",
    }
}

/// A listen event for people (`None` for the connection notices, which go to stderr).
pub fn event_line(event: &ListenEvent, me: &str, now_ms: i64) -> Option<String> {
    let now = time_ms(now_ms);
    Some(match event {
        ListenEvent::Message(m) => message_line(m, me),
        ListenEvent::ContactRequest { from } => {
            let from = clean(from);
            format!("{now} {from} asks to be your contact: `vault contact accept {from}`")
        }
        ListenEvent::ContactChanged { username, state } => {
            let user = clean(username);
            match state {
                Some(ContactState::Contact) => format!("{now} {user} and you are contacts now"),
                Some(ContactState::RequestSent) => {
                    format!("{now} you asked {user} to be your contact")
                }
                Some(ContactState::RequestReceived) => {
                    format!("{now} {user} asks to be your contact: `vault contact accept {user}`")
                }
                None => format!("{now} {user} is no longer your contact"),
            }
        }
        ListenEvent::Presence {
            username, online, ..
        } => format!(
            "{now} {} is {}",
            clean(username),
            if *online { "online" } else { "offline" }
        ),
        ListenEvent::Lost { .. } | ListenEvent::Resumed => return None,
    })
}

/// A listen event as one JSON object (`None` for the connection notices).
pub fn event_json(event: &ListenEvent) -> Option<Value> {
    Some(match event {
        ListenEvent::Message(m) => message_json(m),
        ListenEvent::ContactRequest { from } => json!({"type": "contact_request", "from": from}),
        ListenEvent::ContactChanged { username, state } => json!({
            "type": "contact_changed",
            "username": username,
            "state": state.map(state_name),
        }),
        ListenEvent::Presence {
            username,
            online,
            last_seen,
        } => json!({
            "type": "presence",
            "username": username,
            "online": online,
            "last_seen": last_seen,
        }),
        ListenEvent::Lost { .. } | ListenEvent::Resumed => return None,
    })
}

/// What a connection notice says on stderr.
pub fn notice(event: &ListenEvent) -> Option<String> {
    match event {
        // A lost connection already says so ("the connection was lost (…)").
        ListenEvent::Lost { reason, retry_in } if reason.starts_with("the connection was lost") => {
            Some(format!(
                "{reason}; reconnecting in {:.1} s",
                retry_in.as_secs_f64()
            ))
        }
        ListenEvent::Lost { reason, retry_in } => Some(format!(
            "connection lost ({reason}); reconnecting in {:.1} s",
            retry_in.as_secs_f64()
        )),
        ListenEvent::Resumed => Some("reconnected".into()),
        _ => None,
    }
}

pub fn contact_json(c: &ContactInfo) -> Value {
    json!({
        "username": c.username,
        "display_name": c.display_name,
        "state": state_name(c.state),
        "online": c.online,
        "last_seen": c.last_seen,
    })
}

/// One contact for people: name, display name, and where things stand.
pub fn contact_line(c: &ContactInfo) -> String {
    let user = clean(&c.username);
    let shown = c
        .display_name
        .as_deref()
        .map_or_else(|| "-".to_owned(), clean);
    let status = match c.state {
        ContactState::Contact if c.online => "online".to_owned(),
        ContactState::Contact => match c.last_seen {
            Some(secs) => format!("offline, last seen {}", time_ms(secs.saturating_mul(1000))),
            None => "offline".to_owned(),
        },
        ContactState::RequestSent => "request sent, waiting for them to accept".to_owned(),
        ContactState::RequestReceived => {
            format!("asks to be your contact: `vault contact accept {user}`")
        }
    };
    format!("{user:<32} {shown:<24} {status}")
}

pub fn conversation_json(c: &Conversation) -> Value {
    json!({
        "target": show(&c.target),
        "unread": c.unread,
        "last_id": c.last_id,
        "last_received_at_ms": c.last_received_at_ms,
    })
}

/// One conversation for people: who, unread count, when the last message came.
pub fn conversation_line(c: &Conversation) -> String {
    let unread = match c.unread {
        0 => "read".to_owned(),
        n => format!("{n} unread"),
    };
    format!(
        "{:<33} {unread:>10}   last {}",
        clean(&show(&c.target)),
        time_ms(c.last_received_at_ms)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vault_core::format::chat::FileRef;
    use vault_core::proto::{ByteBuf, SecretBytes};

    use super::*;

    /// 2026-12-02 01:02:03 UTC.
    const AT: i64 = 1_796_173_323_000;

    fn received(from: &str, target: ChatTarget, content: Content) -> Received {
        Received {
            id: 42,
            from: from.into(),
            target,
            sent_at_ms: AT - 5,
            received_at_ms: AT,
            content,
            file: None,
        }
    }

    fn to(user: &str) -> ChatTarget {
        ChatTarget::User {
            username: user.into(),
        }
    }

    fn team() -> ChatTarget {
        ChatTarget::Group {
            name: "team".into(),
        }
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(time_ms(AT), "2026-12-02 01:02:03");
        assert_eq!(time_ms(AT + 999), "2026-12-02 01:02:03");
        assert_eq!(time_ms(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn messages_read_as_one_line_each() {
        let text = Content::Text("hi".into());
        assert_eq!(
            message_line(&received("alice", to("bob"), text.clone()), "bob"),
            "2026-12-02 01:02:03 alice → you: hi"
        );
        assert_eq!(
            message_line(&received("bob", to("alice"), text.clone()), "bob"),
            "2026-12-02 01:02:03 you → alice: hi"
        );
        assert_eq!(
            message_line(&received("alice", team(), text), "bob"),
            "2026-12-02 01:02:03 @team alice: hi"
        );
        let refused = Content::Refused("the signature of alice does not verify".into());
        assert_eq!(
            message_line(&received("alice", team(), refused), "bob"),
            "2026-12-02 01:02:03 @team alice: [refused: the signature of alice does not verify]"
        );
        // Control characters cannot break the line or drive the terminal.
        let nasty = Content::Text("two\nlines \u{1b}[2J\u{202e}gnp.exe".into());
        assert_eq!(
            message_line(&received("alice", to("bob"), nasty), "bob"),
            "2026-12-02 01:02:03 alice → you: $'two\\nlines \\e[2J\\u202Egnp.exe'"
        );
    }

    #[test]
    fn a_file_follows_the_text_with_how_to_fetch_it() {
        let mut m = received("alice", to("bob"), Content::Text("here".into()));
        m.file = Some(FileRef {
            name: "re\nport.pdf".into(),
            size: 2048,
            file_id: 7,
            version: 1,
            key: SecretBytes::new(vec![1; 32]),
            blake3: ByteBuf::from(vec![2; 32]),
        });
        assert_eq!(
            message_line(&m, "bob"),
            "2026-12-02 01:02:03 alice → you: here [file $'re\\nport.pdf', 2.0 KiB: vault chat \
             fetch 42]"
        );
        let json = message_json(&m);
        assert_eq!(json["file"], json!({"name": "re\nport.pdf", "size": 2048}));
        assert!(!json.to_string().contains("key"), "{json}");
        m.content = Content::Text(String::new());
        assert!(message_line(&m, "bob").ends_with(
            "alice → you: [file $'re\\nport.pdf', 2.0 KiB: vault \
             chat fetch 42]"
        ));
    }

    #[test]
    fn a_message_is_json_with_text_only_when_verified() {
        let ok = message_json(&received("alice", to("bob"), Content::Text("hi".into())));
        assert_eq!(
            ok,
            json!({
                "type": "message", "id": 42, "from": "alice", "to": "bob", "group": null,
                "text": "hi", "sent_at_ms": AT - 5, "received_at_ms": AT, "verified": true,
            })
        );
        let bad = message_json(&received(
            "alice",
            team(),
            Content::Refused("the message does not decrypt".into()),
        ));
        assert_eq!(
            bad,
            json!({
                "type": "message", "id": 42, "from": "alice", "to": null, "group": "team",
                "sent_at_ms": AT - 5, "received_at_ms": AT, "verified": false,
                "error": "the message does not decrypt",
            })
        );
        assert!(bad.get("text").is_none());
    }

    #[test]
    fn other_events_have_their_json_shapes_and_lines() {
        let request = ListenEvent::ContactRequest {
            from: "carol".into(),
        };
        assert_eq!(
            event_json(&request),
            Some(json!({"type": "contact_request", "from": "carol"}))
        );
        assert_eq!(
            event_line(&request, "bob", AT).as_deref(),
            Some("2026-12-02 01:02:03 carol asks to be your contact: `vault contact accept carol`")
        );
        let presence = ListenEvent::Presence {
            username: "alice".into(),
            online: false,
            last_seen: Some(1_796_173_000),
        };
        assert_eq!(
            event_json(&presence),
            Some(json!({
                "type": "presence", "username": "alice", "online": false,
                "last_seen": 1_796_173_000,
            }))
        );
        assert_eq!(
            event_line(&presence, "bob", AT).as_deref(),
            Some("2026-12-02 01:02:03 alice is offline")
        );
        let accepted = ListenEvent::ContactChanged {
            username: "alice".into(),
            state: Some(ContactState::Contact),
        };
        assert_eq!(
            event_json(&accepted),
            Some(json!({"type": "contact_changed", "username": "alice", "state": "contact"}))
        );
        let ended = ListenEvent::ContactChanged {
            username: "alice".into(),
            state: None,
        };
        assert_eq!(
            event_json(&ended),
            Some(json!({"type": "contact_changed", "username": "alice", "state": null}))
        );
        assert_eq!(
            event_line(&ended, "bob", AT).as_deref(),
            Some("2026-12-02 01:02:03 alice is no longer your contact")
        );
        let lost = ListenEvent::Lost {
            reason: "server shutting down".into(),
            retry_in: Duration::from_millis(500),
        };
        assert_eq!(event_json(&lost), None);
        assert_eq!(event_line(&lost, "bob", AT), None);
        assert_eq!(
            notice(&lost).as_deref(),
            Some("connection lost (server shutting down); reconnecting in 0.5 s")
        );
    }

    #[test]
    fn contacts_and_conversations_have_their_json_shapes() {
        let alice = ContactInfo {
            username: "alice".into(),
            display_name: Some("Alice A.".into()),
            state: ContactState::Contact,
            online: false,
            last_seen: Some(1_796_173_323),
            public_key: ByteBuf::from(vec![1, 2, 3]),
        };
        assert_eq!(
            contact_json(&alice),
            json!({
                "username": "alice", "display_name": "Alice A.", "state": "contact",
                "online": false, "last_seen": 1_796_173_323,
            })
        );
        assert!(contact_line(&alice).ends_with("offline, last seen 2026-12-02 01:02:03"));
        let carol = ContactInfo {
            username: "carol".into(),
            display_name: None,
            state: ContactState::RequestReceived,
            online: false,
            last_seen: None,
            public_key: ByteBuf::new(),
        };
        assert_eq!(contact_json(&carol)["state"], "request_received");
        assert!(contact_line(&carol).contains("vault contact accept carol"));
        let group = Conversation {
            target: team(),
            last_id: 9,
            last_received_at_ms: AT,
            unread: 3,
        };
        assert_eq!(
            conversation_json(&group),
            json!({"target": "@team", "unread": 3, "last_id": 9, "last_received_at_ms": AT})
        );
        let direct = Conversation {
            target: to("alice"),
            last_id: 8,
            last_received_at_ms: AT,
            unread: 0,
        };
        assert_eq!(conversation_json(&direct)["target"], "alice");
        assert!(conversation_line(&group).contains("3 unread"));
        assert!(conversation_line(&direct).contains("read"));
    }
}
