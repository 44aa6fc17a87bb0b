//! The chat tables (migration `2026-12-02-000004_chat`): `profiles` (display name, when the
//! user was last connected), `contacts` (one row per direction: the caller's view of a
//! relationship), `chat_messages` (each message as its sender's client sealed it, CBOR,
//! with the sender's public key at arrival) and `chat_deliveries` (one row per reader of a
//! message: which conversation it belongs to for them, whether a subscription has carried
//! it, whether they have read it). `chat_attachments` (migration
//! `2026-12-02-000006_chat_files`) names the file entry and version a message carries.
//!
//! A transaction that changes a contact relationship starts with [`lock_users`] of both
//! sides (a no-op update that takes SQLite's write lock and PostgreSQL's row locks before
//! anything is read), so that two requests about one pair run one after the other.

use diesel::prelude::*;

use super::schema::{chat_attachments, chat_deliveries, chat_messages, contacts, profiles, users};
use super::{DbConn, DbResult};

/// `contacts.state`: both accepted.
pub const STATE_CONTACT: &str = "contact";
/// `contacts.state`: this side asked, the other has not answered.
pub const STATE_REQUEST_SENT: &str = "request_sent";
/// `contacts.state`: the other side asked.
pub const STATE_REQUEST_RECEIVED: &str = "request_received";

/// `chat_messages.kind` of a direct message.
pub const KIND_USER: &str = "user";
/// `chat_messages.kind` of a group message.
pub const KIND_GROUP: &str = "group";

/// At most this many ids in one `IN (…)` list (SQLite's parameter limit).
const CHUNK: usize = 500;

/// The `chat_deliveries.conversation` of a direct conversation with user `other_id`.
pub fn conversation_with_user(other_id: i64) -> String {
    format!("user:{other_id}")
}

/// The `chat_deliveries.conversation` of group `group_id`.
pub fn conversation_of_group(group_id: i64) -> String {
    format!("group:{group_id}")
}

/// A conversation key read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationKey {
    User(i64),
    Group(i64),
}

impl ConversationKey {
    /// Parses a stored `conversation`; `None` for a damaged value.
    pub fn parse(raw: &str) -> Option<ConversationKey> {
        let (kind, id) = raw.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "user" => Some(ConversationKey::User(id)),
            "group" => Some(ConversationKey::Group(id)),
            _ => None,
        }
    }
}

/// One profile row.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = profiles)]
pub struct Profile {
    pub user_id: i64,
    pub display_name: Option<String>,
    pub last_seen_at: Option<i64>,
}

/// One contact row: `user_id`'s view of the relationship with `other_id`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = contacts)]
pub struct ContactRow {
    pub user_id: i64,
    pub other_id: i64,
    pub state: String,
    pub created_at: i64,
}

/// A contact row with what `contact_list` shows of the other account.
#[derive(Clone, Debug)]
pub struct ContactUser {
    pub contact: ContactRow,
    pub username: String,
    pub public_key: Vec<u8>,
    pub display_name: Option<String>,
    pub last_seen_at: Option<i64>,
}

/// The values of a new message.
#[derive(Debug, Insertable)]
#[diesel(table_name = chat_messages)]
pub struct NewMessage<'a> {
    pub sender_id: i64,
    pub sender_name: &'a str,
    pub kind: &'a str,
    pub recipient_id: Option<i64>,
    pub group_id: Option<i64>,
    pub body: &'a [u8],
    pub sender_key: &'a [u8],
    pub received_at_ms: i64,
}

/// The values of a new delivery.
#[derive(Debug, Insertable)]
#[diesel(table_name = chat_deliveries)]
pub struct NewDelivery<'a> {
    pub message_id: i64,
    pub user_id: i64,
    pub conversation: &'a str,
    pub delivered: bool,
    pub read: bool,
}

/// A message as one reader's delivery row finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub id: i64,
    pub received_at_ms: i64,
    pub body: Vec<u8>,
    pub sender_key: Vec<u8>,
    /// Whether a subscription has carried it to the reader already.
    pub delivered: bool,
}

/// One conversation of a reader's inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxRow {
    pub conversation: String,
    pub last_id: i64,
    pub last_received_at_ms: i64,
    pub unread: i64,
}

/// What deleting an account or a group removed from the chat tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub contacts: usize,
    pub deliveries: usize,
    pub messages: usize,
}

// ---- profiles ----

pub fn profile(conn: &mut DbConn, user_id: i64) -> DbResult<Option<Profile>> {
    Ok(profiles::table
        .find(user_id)
        .select(Profile::as_select())
        .get_result(conn)
        .optional()?)
}

/// Writes one profile column, creating the row if the user has none yet.
fn put_profile<F>(conn: &mut DbConn, user_id: i64, update: F) -> DbResult<()>
where
    F: Fn(&mut DbConn) -> QueryResult<usize>,
{
    conn.transaction(|conn| {
        if update(conn)? == 0 {
            diesel::insert_into(profiles::table)
                .values(profiles::user_id.eq(user_id))
                .execute(conn)?;
            update(conn)?;
        }
        Ok(())
    })
}

/// Sets (or with `None`, clears) a display name.
pub fn set_display_name(conn: &mut DbConn, user_id: i64, name: Option<&str>) -> DbResult<()> {
    put_profile(conn, user_id, |c| {
        diesel::update(profiles::table.find(user_id))
            .set(profiles::display_name.eq(name))
            .execute(c)
    })
}

/// Records when the user was last connected (Unix seconds).
pub fn set_last_seen(conn: &mut DbConn, user_id: i64, at: i64) -> DbResult<()> {
    put_profile(conn, user_id, |c| {
        diesel::update(profiles::table.find(user_id))
            .set(profiles::last_seen_at.eq(Some(at)))
            .execute(c)
    })
}

// ---- contacts ----

/// Takes the lock of these accounts' rows for the rest of the transaction (see the module
/// documentation), in id order so that two transactions never wait for each other in a
/// circle.
pub fn lock_users(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        diesel::update(users::table.find(id))
            .set(users::locked.eq(users::locked))
            .execute(conn)?;
    }
    Ok(())
}

/// `user_id`'s view of the relationship with `other_id`.
pub fn contact(conn: &mut DbConn, user_id: i64, other_id: i64) -> DbResult<Option<ContactRow>> {
    Ok(contacts::table
        .find((user_id, other_id))
        .select(ContactRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// Writes both sides of a relationship: `user_id` sees `mine`, `other_id` sees `theirs`.
/// `created_at` is kept for a row that exists.
pub fn set_pair(
    conn: &mut DbConn,
    user_id: i64,
    other_id: i64,
    mine: &str,
    theirs: &str,
    now: i64,
) -> DbResult<()> {
    for (a, b, state) in [(user_id, other_id, mine), (other_id, user_id, theirs)] {
        let updated = diesel::update(contacts::table.find((a, b)))
            .set(contacts::state.eq(state))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(contacts::table)
                .values((
                    contacts::user_id.eq(a),
                    contacts::other_id.eq(b),
                    contacts::state.eq(state),
                    contacts::created_at.eq(now),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Deletes both sides of a relationship; returns whether there was one.
pub fn delete_pair(conn: &mut DbConn, user_id: i64, other_id: i64) -> DbResult<bool> {
    let n = diesel::delete(contacts::table.find((user_id, other_id))).execute(conn)?
        + diesel::delete(contacts::table.find((other_id, user_id))).execute(conn)?;
    Ok(n > 0)
}

/// Every relationship of `user_id` (or only the one with the account named `only`) with
/// the other account's name, key and profile, by username.
pub fn contacts_of(
    conn: &mut DbConn,
    user_id: i64,
    only: Option<&str>,
) -> DbResult<Vec<ContactUser>> {
    type Row = (ContactRow, String, Vec<u8>, Option<String>, Option<i64>);
    let mut query = contacts::table
        .inner_join(users::table.on(users::id.eq(contacts::other_id)))
        .left_join(profiles::table.on(profiles::user_id.eq(contacts::other_id)))
        .filter(contacts::user_id.eq(user_id))
        .order(users::username.asc())
        .select((
            ContactRow::as_select(),
            users::username,
            users::public_key,
            profiles::display_name.nullable(),
            profiles::last_seen_at.nullable(),
        ))
        .into_boxed();
    if let Some(name) = only {
        query = query.filter(users::username.eq(name));
    }
    let rows: Vec<Row> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(contact, username, public_key, display_name, last_seen_at)| ContactUser {
                contact,
                username,
                public_key,
                display_name,
                last_seen_at,
            },
        )
        .collect())
}

/// The ids of `user_id`'s mutual contacts.
pub fn mutual_ids(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<i64>> {
    Ok(contacts::table
        .filter(contacts::user_id.eq(user_id))
        .filter(contacts::state.eq(STATE_CONTACT))
        .select(contacts::other_id)
        .load(conn)?)
}

// ---- messages and deliveries ----

/// Inserts a message and returns its id.
pub fn insert_message(conn: &mut DbConn, new: &NewMessage<'_>) -> DbResult<i64> {
    Ok(diesel::insert_into(chat_messages::table)
        .values(new)
        .returning(chat_messages::id)
        .get_result(conn)?)
}

pub fn insert_deliveries(conn: &mut DbConn, rows: &[NewDelivery<'_>]) -> DbResult<()> {
    // One statement per row: `MultiConnection` has no batch insert.
    for row in rows {
        diesel::insert_into(chat_deliveries::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// Records that message `message_id` carries version `version` of entry `entry_id`.
pub fn insert_attachment(
    conn: &mut DbConn,
    message_id: i64,
    entry_id: i64,
    version: i64,
) -> DbResult<()> {
    diesel::insert_into(chat_attachments::table)
        .values((
            chat_attachments::message_id.eq(message_id),
            chat_attachments::entry_id.eq(entry_id),
            chat_attachments::version.eq(version),
        ))
        .execute(conn)?;
    Ok(())
}

/// The entry id and version message `message_id` carries, if it carries a file.
pub fn attachment(conn: &mut DbConn, message_id: i64) -> DbResult<Option<(i64, i64)>> {
    Ok(chat_attachments::table
        .find(message_id)
        .select((chat_attachments::entry_id, chat_attachments::version))
        .get_result(conn)
        .optional()?)
}

/// The group message `message_id` was sent to (`None` for a direct message, or no such
/// message).
pub fn group_of_message(conn: &mut DbConn, message_id: i64) -> DbResult<Option<i64>> {
    Ok(chat_messages::table
        .find(message_id)
        .select(chat_messages::group_id)
        .get_result::<Option<i64>>(conn)
        .optional()?
        .flatten())
}

/// Whether `user_id` has a delivery of message `message_id` (as its sender or a reader).
pub fn has_delivery(conn: &mut DbConn, user_id: i64, message_id: i64) -> DbResult<bool> {
    let n: i64 = chat_deliveries::table
        .filter(chat_deliveries::message_id.eq(message_id))
        .filter(chat_deliveries::user_id.eq(user_id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The columns of a [`Delivered`], from deliveries joined with their messages.
const DELIVERED: (
    chat_messages::id,
    chat_messages::received_at_ms,
    chat_messages::body,
    chat_messages::sender_key,
    chat_deliveries::delivered,
) = (
    chat_messages::id,
    chat_messages::received_at_ms,
    chat_messages::body,
    chat_messages::sender_key,
    chat_deliveries::delivered,
);

type DeliveredRow = (i64, i64, Vec<u8>, Vec<u8>, bool);

fn delivered(rows: Vec<DeliveredRow>) -> Vec<Delivered> {
    rows.into_iter()
        .map(
            |(id, received_at_ms, body, sender_key, delivered)| Delivered {
                id,
                received_at_ms,
                body,
                sender_key,
                delivered,
            },
        )
        .collect()
}

/// A reader's messages of one conversation with ids below `before`, newest first.
pub fn history(
    conn: &mut DbConn,
    user_id: i64,
    conversation: &str,
    before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<Delivered>> {
    let mut q = chat_deliveries::table
        .inner_join(chat_messages::table.on(chat_messages::id.eq(chat_deliveries::message_id)))
        .filter(chat_deliveries::user_id.eq(user_id))
        .filter(chat_deliveries::conversation.eq(conversation))
        .into_boxed();
    if let Some(before) = before {
        q = q.filter(chat_deliveries::message_id.lt(before));
    }
    let rows = q
        .order(chat_deliveries::message_id.desc())
        .limit(limit)
        .select(DELIVERED)
        .load(conn)?;
    Ok(delivered(rows))
}

/// Marks a reader's deliveries of these messages read.
pub fn mark_read(conn: &mut DbConn, user_id: i64, ids: &[i64]) -> DbResult<()> {
    for chunk in ids.chunks(CHUNK) {
        diesel::update(
            chat_deliveries::table
                .filter(chat_deliveries::user_id.eq(user_id))
                .filter(chat_deliveries::message_id.eq_any(chunk))
                .filter(chat_deliveries::read.eq(false)),
        )
        .set(chat_deliveries::read.eq(true))
        .execute(conn)?;
    }
    Ok(())
}

/// Marks a reader's deliveries of these messages delivered.
pub fn mark_delivered(conn: &mut DbConn, user_id: i64, ids: &[i64]) -> DbResult<()> {
    for chunk in ids.chunks(CHUNK) {
        diesel::update(
            chat_deliveries::table
                .filter(chat_deliveries::user_id.eq(user_id))
                .filter(chat_deliveries::message_id.eq_any(chunk))
                .filter(chat_deliveries::delivered.eq(false)),
        )
        .set(chat_deliveries::delivered.eq(true))
        .execute(conn)?;
    }
    Ok(())
}

/// The highest message id among a reader's deliveries (0 when there are none).
pub fn last_delivery(conn: &mut DbConn, user_id: i64) -> DbResult<i64> {
    let max: Option<i64> = chat_deliveries::table
        .filter(chat_deliveries::user_id.eq(user_id))
        .select(diesel::dsl::max(chat_deliveries::message_id))
        .get_result(conn)?;
    Ok(max.unwrap_or(0))
}

/// A reader's messages with ids in `(after, upto]`, oldest first, at most `limit`; with
/// `undelivered_only`, only those no subscription has carried yet.
pub fn deliveries_between(
    conn: &mut DbConn,
    user_id: i64,
    after: i64,
    upto: Option<i64>,
    undelivered_only: bool,
    limit: i64,
) -> DbResult<Vec<Delivered>> {
    let mut q = chat_deliveries::table
        .inner_join(chat_messages::table.on(chat_messages::id.eq(chat_deliveries::message_id)))
        .filter(chat_deliveries::user_id.eq(user_id))
        .filter(chat_deliveries::message_id.gt(after))
        .into_boxed();
    if let Some(upto) = upto {
        q = q.filter(chat_deliveries::message_id.le(upto));
    }
    if undelivered_only {
        q = q.filter(chat_deliveries::delivered.eq(false));
    }
    let rows = q
        .order(chat_deliveries::message_id.asc())
        .limit(limit)
        .select(DELIVERED)
        .load(conn)?;
    Ok(delivered(rows))
}

/// The ids of a reader's messages above `after`, oldest first, at most `limit`, each with
/// whether a subscription has carried it already.
pub fn delivery_states_after(
    conn: &mut DbConn,
    user_id: i64,
    after: i64,
    limit: i64,
) -> DbResult<Vec<(i64, bool)>> {
    Ok(chat_deliveries::table
        .filter(chat_deliveries::user_id.eq(user_id))
        .filter(chat_deliveries::message_id.gt(after))
        .order(chat_deliveries::message_id.asc())
        .limit(limit)
        .select((chat_deliveries::message_id, chat_deliveries::delivered))
        .load(conn)?)
}

/// A reader's messages with these ids, oldest first.
pub fn deliveries_by_id(conn: &mut DbConn, user_id: i64, ids: &[i64]) -> DbResult<Vec<Delivered>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows = chat_deliveries::table
            .inner_join(chat_messages::table.on(chat_messages::id.eq(chat_deliveries::message_id)))
            .filter(chat_deliveries::user_id.eq(user_id))
            .filter(chat_deliveries::message_id.eq_any(chunk))
            .order(chat_deliveries::message_id.asc())
            .select(DELIVERED)
            .load(conn)?;
        out.extend(delivered(rows));
    }
    Ok(out)
}

/// One row per conversation of a reader: its newest message and how many are unread,
/// newest conversation first.
pub fn inbox(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<InboxRow>> {
    let last: Vec<(String, Option<i64>)> = chat_deliveries::table
        .filter(chat_deliveries::user_id.eq(user_id))
        .group_by(chat_deliveries::conversation)
        .select((
            chat_deliveries::conversation,
            diesel::dsl::max(chat_deliveries::message_id),
        ))
        .load(conn)?;
    let unread: std::collections::HashMap<String, i64> = chat_deliveries::table
        .filter(chat_deliveries::user_id.eq(user_id))
        .filter(chat_deliveries::read.eq(false))
        .group_by(chat_deliveries::conversation)
        .select((chat_deliveries::conversation, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let last: Vec<(String, i64)> = last
        .into_iter()
        .filter_map(|(conv, id)| id.map(|id| (conv, id)))
        .collect();
    let ids: Vec<i64> = last.iter().map(|(_, id)| *id).collect();
    let mut times = std::collections::HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        times.extend(
            chat_messages::table
                .filter(chat_messages::id.eq_any(chunk))
                .select((chat_messages::id, chat_messages::received_at_ms))
                .load::<(i64, i64)>(conn)?,
        );
    }
    let mut rows: Vec<InboxRow> = last
        .into_iter()
        .map(|(conversation, last_id)| InboxRow {
            unread: unread.get(&conversation).copied().unwrap_or(0),
            last_received_at_ms: times.get(&last_id).copied().unwrap_or(0),
            conversation,
            last_id,
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.last_id));
    Ok(rows)
}

/// Deletes these messages where no delivery is left; returns how many went.
fn delete_orphans(conn: &mut DbConn, ids: &[i64]) -> DbResult<usize> {
    let mut n = 0;
    for chunk in ids.chunks(CHUNK) {
        let kept: Vec<i64> = chat_deliveries::table
            .filter(chat_deliveries::message_id.eq_any(chunk))
            .select(chat_deliveries::message_id)
            .distinct()
            .load(conn)?;
        let gone: Vec<i64> = chunk
            .iter()
            .copied()
            .filter(|id| !kept.contains(id))
            .collect();
        if !gone.is_empty() {
            diesel::delete(
                chat_attachments::table.filter(chat_attachments::message_id.eq_any(&gone)),
            )
            .execute(conn)?;
            n += diesel::delete(chat_messages::table.filter(chat_messages::id.eq_any(&gone)))
                .execute(conn)?;
        }
    }
    Ok(n)
}

/// For a deleted account: its contact rows (both sides), its profile and its deliveries
/// go, then every message it had a delivery of that no one else has one of.
pub fn delete_user(conn: &mut DbConn, user_id: i64) -> DbResult<Removed> {
    let contacts = diesel::delete(
        contacts::table.filter(
            contacts::user_id
                .eq(user_id)
                .or(contacts::other_id.eq(user_id)),
        ),
    )
    .execute(conn)?;
    diesel::delete(profiles::table.find(user_id)).execute(conn)?;
    let ids: Vec<i64> = chat_deliveries::table
        .filter(chat_deliveries::user_id.eq(user_id))
        .select(chat_deliveries::message_id)
        .load(conn)?;
    let deliveries =
        diesel::delete(chat_deliveries::table.filter(chat_deliveries::user_id.eq(user_id)))
            .execute(conn)?;
    let messages = delete_orphans(conn, &ids)?;
    Ok(Removed {
        contacts,
        deliveries,
        messages,
    })
}

/// For a deleted group: every delivery, message and attachment row of its conversation.
pub fn delete_group(conn: &mut DbConn, group_id: i64) -> DbResult<Removed> {
    let deliveries = diesel::delete(
        chat_deliveries::table
            .filter(chat_deliveries::conversation.eq(conversation_of_group(group_id))),
    )
    .execute(conn)?;
    let ids: Vec<i64> = chat_messages::table
        .filter(chat_messages::kind.eq(KIND_GROUP))
        .filter(chat_messages::group_id.eq(group_id))
        .select(chat_messages::id)
        .load(conn)?;
    for chunk in ids.chunks(CHUNK) {
        diesel::delete(chat_attachments::table.filter(chat_attachments::message_id.eq_any(chunk)))
            .execute(conn)?;
    }
    let messages = diesel::delete(
        chat_messages::table
            .filter(chat_messages::kind.eq(KIND_GROUP))
            .filter(chat_messages::group_id.eq(group_id)),
    )
    .execute(conn)?;
    Ok(Removed {
        contacts: 0,
        deliveries,
        messages,
    })
}

/// How many messages are stored, and how many of them arrived at or after `since_ms`.
pub fn count_messages(conn: &mut DbConn, since_ms: i64) -> DbResult<(i64, i64)> {
    let total = chat_messages::table.count().get_result(conn)?;
    let recent = chat_messages::table
        .filter(chat_messages::received_at_ms.ge(since_ms))
        .count()
        .get_result(conn)?;
    Ok((total, recent))
}
