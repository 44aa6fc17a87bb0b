//! `vault-admin group …`: list groups and show one (members with their roles, who is still
//! waiting for the key, the key generation, the space used), create a group for an owner,
//! delete one with its files, add and remove members, hand a group over to another owner,
//! and set a group's quota. The changes are the server's own
//! (`vault_server::groups::change`), in one transaction each, audited with actor `admin`.
//!
//! The operator holds no group key, so: a group created here has no key until its owner's
//! client makes one; a member added here sees the group but cannot read it until a keyed
//! member's client wraps the key for them ("waiting for key" in `show`); and a removal here
//! takes access away at once on the server and leaves a new key generation due, which the
//! next keyed member's client makes.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde::Serialize;
use vault_proto::proto::{GroupRole, names};
use vault_server::db::groups::{self, Group};
use vault_server::db::{self, DbConn};
use vault_server::error::Failure;
use vault_server::groups::change;
use vault_server::groups::view::{self, GroupView};
use vault_server::maintenance::purge::Purged;

use crate::context::{Ctx, record};
use crate::out::out;
use crate::output::{self, Table, iso_time};
use crate::users::{find_user, parse_quota};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List all groups: owner, members, key generation, space used and quota.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one group: its members with their roles and who is waiting for the key.
    Show {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a group owned by USER. It has no key until the owner's client makes one.
    Create {
        group: String,
        #[arg(long, value_name = "USER")]
        owner: String,
    },
    /// Delete a group and every file in it, for good (needs --yes).
    Delete {
        group: String,
        /// Confirm that the group and all its files may be lost.
        #[arg(long)]
        yes: bool,
    },
    /// Add a user to a group; a keyed member's client wraps the key for them later.
    AddMember {
        group: String,
        user: String,
        /// `member` or `manager` (an owner is made with set-owner).
        #[arg(long, default_value = "member")]
        role: GroupRole,
    },
    /// Remove a member at once; the next keyed member's client makes a new key generation.
    RemoveMember { group: String, user: String },
    /// Make a member the owner; the old owner becomes a manager.
    SetOwner { group: String, user: String },
    /// Set a group's storage quota, e.g. 10GiB, 500MB, or bytes.
    SetQuota {
        group: String,
        #[arg(value_name = "SIZE", value_parser = parse_quota)]
        size: i64,
    },
}

pub fn run(ctx: &Ctx, command: GroupCommand) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let conn = &mut *db.conn()?;
    let text = match command {
        GroupCommand::List { json } => list(conn, json)?,
        GroupCommand::Show { group, json } => show(conn, &group, json)?,
        GroupCommand::Create { group, owner } => {
            let quota = i64::try_from(ctx.config.groups.default_quota.0).unwrap_or(i64::MAX);
            create(conn, &group, &owner, quota)?
        }
        GroupCommand::Delete { group, yes } => {
            let (text, purged) = delete(conn, &group, yes)?;
            // Partial uploads go now; gc removes anything left here as an orphan later.
            if !purged.partials.is_empty()
                && let Ok(store) = ctx.blobs()
            {
                for problem in purged.remove_partials(store.as_ref()) {
                    eprintln!("warning: {problem} (gc removes it later)");
                }
            }
            text
        }
        GroupCommand::AddMember { group, user, role } => add_member(conn, &group, &user, role)?,
        GroupCommand::RemoveMember { group, user } => remove_member(conn, &group, &user)?,
        GroupCommand::SetOwner { group, user } => set_owner(conn, &group, &user)?,
        GroupCommand::SetQuota { group, size } => set_quota(conn, &group, size)?,
    };
    out!("{text}")?;
    Ok(())
}

/// A refusal of the shared group code as an error for the operator (its message without
/// the wire code), or a database error.
pub fn failure(f: Failure) -> anyhow::Error {
    match f {
        Failure::Api(e) => anyhow!(e.message),
        Failure::Db(e) => e.into(),
    }
}

/// The group named `name` (case-folded like the server does), or an error that says where
/// to look.
fn find_group(conn: &mut DbConn, name: &str) -> anyhow::Result<Group> {
    let folded = names::normalize_group_name(name).unwrap_or_else(|_| name.to_string());
    match groups::by_name(conn, &folded)? {
        Some(g) => Ok(g),
        None => bail!("no group named {name:?} (see vault-admin group list)"),
    }
}

/// Runs `work` on group `id` in one transaction that starts by locking it.
fn in_group<T>(
    conn: &mut DbConn,
    id: i64,
    work: impl FnOnce(&mut DbConn, &Group) -> Result<T, Failure>,
) -> anyhow::Result<T> {
    db::transaction(conn, |c| {
        let group = groups::lock(c, id)?.ok_or_else(|| {
            vault_proto::proto::ApiError::not_found("the group was deleted meanwhile")
        })?;
        work(c, &group)
    })
    .map_err(failure)
}

/// One group in `group list --json` (and the head of `group show --json`).
#[derive(Debug, Serialize)]
struct GroupSummary {
    id: i64,
    name: String,
    owner: Option<String>,
    members: usize,
    /// Members who do not hold the key in force yet.
    waiting: usize,
    /// The key generation in force; `null` before the first key.
    generation: Option<u32>,
    /// A member was removed and the next generation is not made yet.
    rotation_pending: bool,
    used_bytes: i64,
    quota_bytes: i64,
    created_at: i64,
}

impl GroupSummary {
    fn of(v: &GroupView) -> GroupSummary {
        GroupSummary {
            id: v.group.id,
            name: v.group.name.clone(),
            owner: v.owner().map(|m| m.user.username.clone()),
            members: v.members.len(),
            waiting: v.waiting().count(),
            generation: v.generation(),
            rotation_pending: v.group.needs_rotation,
            used_bytes: v.used_bytes,
            quota_bytes: v.quota_bytes,
            created_at: v.group.created_at,
        }
    }

    /// `none yet`, `generation 2`, or `generation 2, next one due`.
    fn key_text(&self) -> String {
        match (self.generation, self.rotation_pending) {
            (None, _) => "none yet".into(),
            (Some(g), false) => format!("generation {g}"),
            (Some(g), true) => format!("generation {g}, next one due"),
        }
    }
}

/// One member in `group show --json`.
#[derive(Debug, Serialize)]
struct MemberRow {
    username: String,
    role: GroupRole,
    /// Holds the key generation in force; `false` means waiting for a keyed member's
    /// client to wrap it for them.
    has_key: bool,
    locked: bool,
    joined_at: i64,
}

/// `group show --json`.
#[derive(Debug, Serialize)]
struct GroupDetail {
    #[serde(flatten)]
    summary: GroupSummary,
    members: Vec<MemberRow>,
    /// The names of the members waiting for the key.
    waiting_for_key: Vec<String>,
}

fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn load(conn: &mut DbConn, group: Group) -> anyhow::Result<GroupView> {
    view::load(conn, group).map_err(failure)
}

fn list(conn: &mut DbConn, as_json: bool) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for group in groups::list(conn)? {
        rows.push(GroupSummary::of(&load(conn, group)?));
    }
    if as_json {
        return json(&rows);
    }
    if rows.is_empty() {
        return Ok("no groups yet\n".into());
    }
    let mut table = Table::new(&[
        "GROUP", "OWNER", "MEMBERS", "KEY", "USED", "QUOTA", "CREATED",
    ]);
    for r in &rows {
        table.row(vec![
            r.name.clone(),
            output::or_dash(r.owner.as_deref()).into(),
            r.members.to_string(),
            r.key_text(),
            output::size(r.used_bytes),
            output::size(r.quota_bytes),
            iso_time(r.created_at),
        ]);
    }
    Ok(table.render())
}

fn show(conn: &mut DbConn, name: &str, as_json: bool) -> anyhow::Result<String> {
    let group = find_group(conn, name)?;
    let v = load(conn, group)?;
    let summary = GroupSummary::of(&v);
    let waiting: Vec<String> = v.waiting().map(|m| m.user.username.clone()).collect();
    if as_json {
        return json(&GroupDetail {
            summary,
            members: v
                .members
                .iter()
                .map(|m| MemberRow {
                    username: m.user.username.clone(),
                    role: m.role,
                    has_key: m.has_key,
                    locked: m.user.locked,
                    joined_at: m.user.member.joined_at,
                })
                .collect(),
            waiting_for_key: waiting,
        });
    }
    let members = if waiting.is_empty() {
        summary.members.to_string()
    } else {
        format!(
            "{}, {} waiting for the key: {}",
            summary.members,
            waiting.len(),
            waiting.join(", ")
        )
    };
    let key = match (summary.generation, summary.rotation_pending) {
        (None, _) => "none yet: a member's client makes the first the next time it connects".into(),
        (Some(_), true) => format!(
            "{}: a member was removed, and the next keyed member's client makes it",
            summary.key_text()
        ),
        (Some(_), false) => summary.key_text(),
    };
    let mut text = output::render_fields(&[
        ("group", format!("{} (id {})", summary.name, summary.id)),
        ("owner", output::or_dash(summary.owner.as_deref()).into()),
        ("members", members),
        ("key", key),
        (
            "used",
            format!(
                "{} of {} ({} of {} bytes)",
                output::size(summary.used_bytes),
                output::size(summary.quota_bytes),
                summary.used_bytes,
                summary.quota_bytes
            ),
        ),
        ("created", iso_time(summary.created_at)),
    ]);
    text.push('\n');
    let mut table = Table::new(&["USER", "ROLE", "KEY", "JOINED"]);
    for m in &v.members {
        let user = if m.user.locked {
            format!("{} (locked)", m.user.username)
        } else {
            m.user.username.clone()
        };
        let key = if m.has_key { "yes" } else { "waiting for key" };
        table.row(vec![
            user,
            m.role.to_string(),
            key.into(),
            iso_time(m.user.member.joined_at),
        ]);
    }
    text.push_str(&table.render());
    Ok(text)
}

fn create(conn: &mut DbConn, raw: &str, owner: &str, quota: i64) -> anyhow::Result<String> {
    let name = names::normalize_group_name(raw).map_err(|e| anyhow!(e))?;
    let owner = find_user(conn, owner)?;
    if owner.locked {
        bail!(
            "{0} is locked and could not use the group: unlock them first (`vault-admin user \
             unlock {0}`) or choose another owner",
            owner.username
        );
    }
    let group = db::transaction(conn, |c| {
        let group = change::create(c, &name, owner.id, quota, output::now())?;
        record(
            c,
            "group.create",
            Some(&owner.username),
            &format!(
                "created group {name} (id {}) owned by {}, quota {quota} bytes",
                group.id, owner.username
            ),
        )?;
        Ok::<_, Failure>(group)
    })
    .map_err(failure)?;
    Ok(format!(
        "created group {name} (id {}) owned by {}, with a quota of {}\nit has no key yet: {}'s \
         client makes it the next time it connects\n",
        group.id,
        owner.username,
        output::size(quota),
        owner.username
    ))
}

fn delete(conn: &mut DbConn, name: &str, yes: bool) -> anyhow::Result<(String, Purged)> {
    let group = find_group(conn, name)?;
    if !yes {
        let v = load(conn, group)?;
        bail!(
            "not deleting group {0} without --yes: this removes it for its {1} with every file \
             in it ({2}), for good. Run `vault-admin group delete {0} --yes` to go ahead",
            v.group.name,
            output::plural(v.members.len(), "member", "members"),
            output::size(v.used_bytes)
        );
    }
    let purged = in_group(conn, group.id, |c, g| {
        let purged = change::delete(c, g, output::now())?;
        record(
            c,
            "group.delete",
            None,
            &format!(
                "deleted group {} (id {}) with {}, {} ({} bytes) and {}",
                g.name,
                g.id,
                output::plural(purged.entries, "entry", "entries"),
                output::plural(purged.versions, "version", "versions"),
                purged.bytes,
                output::plural(purged.uploads, "upload", "uploads")
            ),
        )?;
        Ok(purged)
    })?;
    let mut text = format!("deleted group {}\n", group.name);
    if purged.entries > 0 || purged.uploads > 0 {
        text.push_str(&format!(
            "deleted its {} with {} ({}); gc removes the blobs after the grace period\n",
            output::plural(purged.entries, "file or folder", "files and folders"),
            output::plural(purged.versions, "version", "versions"),
            output::size(purged.bytes)
        ));
    }
    Ok((text, purged))
}

fn add_member(
    conn: &mut DbConn,
    name: &str,
    user: &str,
    role: GroupRole,
) -> anyhow::Result<String> {
    let group = find_group(conn, name)?;
    let user = find_user(conn, user)?;
    let keyed = in_group(conn, group.id, |c, g| {
        change::add_member(c, g, &user, role, output::now())?;
        record(
            c,
            "group.add",
            Some(&user.username),
            &format!(
                "added {} to group {} as {role}, without envelopes",
                user.username, g.name
            ),
        )?;
        Ok(g.key_generation.is_some())
    })?;
    let next = if keyed {
        format!(
            "{} waits for the key until a keyed member's client connects (see `vault-admin \
             group show {}`)",
            user.username, group.name
        )
    } else {
        "the group has no key yet: a member's client makes it the next time it connects".into()
    };
    Ok(format!(
        "added {} to group {} as {role}\n{next}\n",
        user.username, group.name
    ))
}

fn remove_member(conn: &mut DbConn, name: &str, user: &str) -> anyhow::Result<String> {
    let group = find_group(conn, name)?;
    let user = find_user(conn, user)?;
    let due = in_group(conn, group.id, |c, g| {
        let Some(member) = groups::member(c, g.id, user.id)? else {
            return Err(vault_proto::proto::ApiError::not_found(format!(
                "{} is not a member of group {}",
                user.username, g.name
            ))
            .into());
        };
        if member.role == GroupRole::Owner.as_str() {
            return Err(vault_proto::proto::ApiError::forbidden(format!(
                "{0} owns group {1}: hand it to another member first (`vault-admin group \
                 set-owner {1} USER`), or delete the group",
                user.username, g.name
            ))
            .into());
        }
        let due = change::remove_member(c, g, user.id)?;
        let outcome = if due {
            "a new key generation is due"
        } else {
            "the group has no key yet"
        };
        record(
            c,
            "group.remove",
            Some(&user.username),
            &format!("removed {} from group {}; {outcome}", user.username, g.name),
        )?;
        Ok(due)
    })?;
    let mut text = format!(
        "removed {} from group {}: it can no longer fetch anything of the group\n",
        user.username, group.name
    );
    if due {
        text.push_str(
            "the next keyed member's client makes a new key generation, for what is stored \
             from then on\n",
        );
    }
    Ok(text)
}

fn set_owner(conn: &mut DbConn, name: &str, user: &str) -> anyhow::Result<String> {
    let group = find_group(conn, name)?;
    let user = find_user(conn, user)?;
    let old = in_group(conn, group.id, |c, g| {
        let Some(member) = groups::member(c, g.id, user.id)? else {
            return Err(vault_proto::proto::ApiError::not_found(format!(
                "{0} is not a member of group {1}: add them first (`vault-admin group \
                 add-member {1} {0}`)",
                user.username, g.name
            ))
            .into());
        };
        if member.role == GroupRole::Owner.as_str() {
            return Ok(None);
        }
        let old = change::set_owner(c, g, user.id)?;
        let old_name = match old {
            Some(id) => db::users::by_id(c, id)?.map(|u| u.username),
            None => None,
        };
        let was = old_name
            .as_deref()
            .map_or_else(String::new, |n| format!("; {n} is now a manager"));
        record(
            c,
            "group.role",
            Some(&user.username),
            &format!("made {} owner of group {}{was}", user.username, g.name),
        )?;
        Ok(Some(old_name))
    })?;
    Ok(match old {
        None => format!("{} already owns group {}\n", user.username, group.name),
        Some(Some(old)) => format!(
            "{} now owns group {}; {old} is a manager\n",
            user.username, group.name
        ),
        Some(None) => format!("{} now owns group {}\n", user.username, group.name),
    })
}

fn set_quota(conn: &mut DbConn, name: &str, bytes: i64) -> anyhow::Result<String> {
    let group = find_group(conn, name)?;
    let shown = format!("{} ({bytes} bytes)", output::size(bytes));
    let before = in_group(conn, group.id, |c, g| {
        let before = groups::namespace(c, g.id)?.and_then(|ns| ns.quota_bytes);
        if before == Some(bytes) {
            return Ok(before);
        }
        groups::set_quota(c, g.id, bytes)?;
        record(
            c,
            "group.quota",
            None,
            &format!(
                "quota of group {} {} -> {bytes} bytes",
                g.name,
                before.map_or_else(|| "none".into(), |b| b.to_string())
            ),
        )?;
        Ok(before)
    })?;
    Ok(if before == Some(bytes) {
        format!("the quota of group {} is already {shown}\n", group.name)
    } else {
        format!("the quota of group {} is now {shown}\n", group.name)
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use clap::Parser;
    use vault_server::db::Db;
    use vault_server::db::groups::NewEnvelopeRow;
    use vault_server::db::users::{NewUser, User};

    use super::*;

    type R<T> = Result<T, Box<dyn std::error::Error>>;

    /// A database in a fresh directory under the system's temp dir, removed on drop.
    struct Scratch {
        dir: PathBuf,
        db: Db,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn scratch() -> R<Scratch> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vault-admin-groups-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        let db = Db::open(&dir.join("vault.db").display().to_string())?;
        let scratch = Scratch { dir, db };
        let conn = &mut *scratch.db.conn()?;
        for name in ["alice", "bob", "carol", "dave"] {
            add_user(conn, name)?;
        }
        Ok(scratch)
    }

    fn add_user(conn: &mut DbConn, name: &str) -> R<User> {
        let email = format!("{name}@example.org");
        Ok(db::users::insert(
            conn,
            &NewUser {
                username: name,
                email: &email,
                auth_hash: "x",
                kdf_salt: &[0; 16],
                kdf_memory_kib: 8,
                kdf_iterations: 1,
                kdf_parallelism: 1,
                account_key_by_kek: &[],
                account_key_by_recovery: &[],
                public_key: &[1; 8],
                private_key_sealed: &[],
                quota_bytes: 1 << 20,
                locked: false,
                created_at: 0,
            },
        )?)
    }

    /// What a member's client does with the key: an envelope of `generation` for each of
    /// `members`, and the generation in force.
    fn key(conn: &mut DbConn, group: &str, generation: i64, members: &[&str]) -> R<()> {
        let g = find_group(conn, group)?;
        for name in members {
            let user = find_user(conn, name)?;
            groups::insert_envelope(
                conn,
                &NewEnvelopeRow {
                    group_id: g.id,
                    generation,
                    user_id: user.id,
                    envelope: b"e",
                    signature: b"s",
                    signer: "alice",
                    signer_key: &[1; 8],
                    created_at: 0,
                },
            )?;
        }
        groups::set_generation(conn, g.id, generation)?;
        Ok(())
    }

    fn show_json(conn: &mut DbConn, group: &str) -> R<serde_json::Value> {
        Ok(serde_json::from_str(&show(conn, group, true)?)?)
    }

    #[test]
    fn a_created_group_shows_who_waits_for_the_key_until_healed() -> R<()> {
        let s = scratch()?;
        let conn = &mut *s.db.conn()?;
        let text = create(conn, "@Team", "alice", 4096)?;
        assert!(text.contains("created group team"), "{text}");
        assert!(text.contains("no key yet"), "{text}");
        let listed: serde_json::Value = serde_json::from_str(&list(conn, true)?)?;
        assert_eq!(listed[0]["name"], "team", "{listed}");
        assert_eq!(listed[0]["owner"], "alice", "{listed}");
        assert_eq!(listed[0]["generation"], serde_json::Value::Null, "{listed}");
        assert_eq!(listed[0]["quota_bytes"], 4096, "{listed}");
        let text = show(conn, "team", false)?;
        assert!(text.contains("none yet"), "{text}");

        // The owner's client made the first key; carol, added here, waits for hers.
        key(conn, "team", 0, &["alice"])?;
        let text = add_member(conn, "team", "carol", GroupRole::Member)?;
        assert!(text.contains("carol waits for the key"), "{text}");
        let text = show(conn, "team", false)?;
        assert!(text.contains("1 waiting for the key: carol"), "{text}");
        assert!(text.contains("waiting for key"), "{text}");
        let shown = show_json(conn, "team")?;
        assert_eq!(shown["waiting_for_key"], serde_json::json!(["carol"]));
        assert_eq!(shown["generation"], 0);
        assert_eq!(shown["members"][0]["username"], "alice");
        assert_eq!(shown["members"][0]["role"], "owner");
        assert_eq!(shown["members"][1]["has_key"], false);
        let text = list(conn, false)?;
        assert!(text.contains("generation 0"), "{text}");

        // A keyed member's client wrapped the key for her: nobody waits.
        key(conn, "team", 0, &["carol"])?;
        let text = show(conn, "team", false)?;
        assert!(!text.contains("waiting"), "{text}");
        Ok(())
    }

    #[test]
    fn refusals_say_what_to_do() -> R<()> {
        let s = scratch()?;
        let conn = &mut *s.db.conn()?;
        let e = create(conn, "team", "nobody", 1).expect_err("unknown owner");
        assert!(e.to_string().contains("vault-admin user list"), "{e}");
        let e = create(conn, "a/b", "alice", 1).expect_err("bad name");
        assert!(e.to_string().contains("group name"), "{e}");
        let dave = find_user(conn, "dave")?;
        db::users::set_locked(conn, dave.id, true)?;
        let e = create(conn, "team", "dave", 1).expect_err("locked owner");
        assert!(
            e.to_string().contains("vault-admin user unlock dave"),
            "{e}"
        );
        let e = add_member(conn, "team", "bob", GroupRole::Member).expect_err("no group");
        assert!(e.to_string().contains("vault-admin group list"), "{e}");

        create(conn, "team", "alice", 1)?;
        let e = create(conn, "TEAM", "bob", 1).expect_err("taken");
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = add_member(conn, "team", "dave", GroupRole::Member).expect_err("locked");
        assert!(e.to_string().contains("locked"), "{e}");
        let e = add_member(conn, "team", "bob", GroupRole::Owner).expect_err("owner");
        assert!(e.to_string().contains("one owner"), "{e}");
        add_member(conn, "team", "bob", GroupRole::Manager)?;
        let e = add_member(conn, "team", "bob", GroupRole::Member).expect_err("twice");
        assert!(e.to_string().contains("already a member"), "{e}");
        assert_eq!(show_json(conn, "team")?["members"][1]["role"], "manager");
        Ok(())
    }

    #[test]
    fn removal_leaves_a_rotation_due_and_ownership_moves_to_a_member() -> R<()> {
        let s = scratch()?;
        let conn = &mut *s.db.conn()?;
        create(conn, "team", "alice", 1 << 20)?;
        add_member(conn, "team", "bob", GroupRole::Member)?;
        add_member(conn, "team", "carol", GroupRole::Member)?;
        key(conn, "team", 0, &["alice", "bob", "carol"])?;

        let e = remove_member(conn, "team", "alice").expect_err("owner");
        assert!(e.to_string().contains("set-owner team USER"), "{e}");
        let e = remove_member(conn, "team", "dave").expect_err("not a member");
        assert!(e.to_string().contains("not a member"), "{e}");
        let text = remove_member(conn, "team", "carol")?;
        assert!(text.contains("new key generation"), "{text}");
        let shown = show_json(conn, "team")?;
        assert_eq!(shown["rotation_pending"], true);
        assert_eq!(shown["members"].as_array().map(Vec::len), Some(2));
        assert!(show(conn, "team", false)?.contains("next one due"));
        let carol = find_user(conn, "carol")?;
        let g = find_group(conn, "team")?;
        assert!(groups::envelopes_of(conn, g.id, carol.id)?.is_empty());

        let e = set_owner(conn, "team", "dave").expect_err("not a member");
        assert!(e.to_string().contains("add-member team dave"), "{e}");
        let text = set_owner(conn, "team", "bob")?;
        assert!(text.contains("alice is a manager"), "{text}");
        let shown = show_json(conn, "team")?;
        assert_eq!(shown["owner"], "bob");
        assert_eq!(shown["members"][1]["username"], "alice");
        assert_eq!(shown["members"][1]["role"], "manager");
        assert!(set_owner(conn, "team", "bob")?.contains("already owns"));
        Ok(())
    }

    #[test]
    fn quota_delete_and_the_audit_log() -> R<()> {
        let s = scratch()?;
        let conn = &mut *s.db.conn()?;
        create(conn, "team", "alice", 1 << 20)?;
        add_member(conn, "team", "bob", GroupRole::Member)?;
        assert!(set_quota(conn, "team", 4096)?.contains("is now 4.0 KiB"));
        assert!(set_quota(conn, "team", 4096)?.contains("already"));
        let g = find_group(conn, "team")?;
        let ns = groups::namespace(conn, g.id)?.ok_or("no namespace")?;
        assert_eq!(ns.quota_bytes, Some(4096));
        remove_member(conn, "team", "bob")?;
        set_owner(conn, "team", "alice")?;

        let e = delete(conn, "team", false).expect_err("no --yes");
        assert!(e.to_string().contains("--yes"), "{e}");
        assert!(find_group(conn, "team").is_ok());
        let (text, _) = delete(conn, "team", true)?;
        assert!(text.contains("deleted group team"), "{text}");
        assert_eq!(list(conn, true)?.trim(), "[]");
        assert!(groups::namespace(conn, g.id)?.is_none());
        // The name is free again.
        create(conn, "team", "bob", 1)?;

        let events: Vec<(String, String)> = db::audit::query(conn, None, None, 100)?
            .into_iter()
            .map(|e| (e.actor, e.event))
            .collect();
        for event in [
            "group.create",
            "group.add",
            "group.quota",
            "group.remove",
            "group.delete",
        ] {
            assert!(
                events.contains(&("admin".into(), event.into())),
                "{event} not in {events:?}"
            );
        }
        // A command that changes nothing writes nothing: one quota entry.
        let quotas = events.iter().filter(|(_, e)| e == "group.quota").count();
        assert_eq!(quotas, 1);
        Ok(())
    }

    #[test]
    fn the_command_line_takes_a_role_and_a_size() {
        let args = crate::Args::try_parse_from([
            "vault-admin",
            "group",
            "add-member",
            "team",
            "bob",
            "--role",
            "manager",
        ])
        .expect("parses");
        assert!(
            matches!(
                args.command,
                crate::Command::Group(GroupCommand::AddMember {
                    role: GroupRole::Manager,
                    ..
                })
            ),
            "{args:?}"
        );
        assert!(
            crate::Args::try_parse_from([
                "vault-admin",
                "group",
                "add-member",
                "t",
                "b",
                "--role",
                "boss"
            ])
            .is_err()
        );
        let args =
            crate::Args::try_parse_from(["vault-admin", "group", "set-quota", "team", "4KiB"])
                .expect("parses");
        assert!(
            matches!(
                args.command,
                crate::Command::Group(GroupCommand::SetQuota { size: 4096, .. })
            ),
            "{args:?}"
        );
    }
}
