//! `vault group …` and `vault key …`: check the arguments (offline), open the session
//! (which also does the key work the server has for this client), run the command through
//! `vault_client::groups`, and print text, or JSON with `--json`. A join code goes alone to
//! stdout; explanations go to stderr. Key-work failures are printed as warnings.

use std::io::IsTerminal;

use anyhow::bail;
use serde_json::{Value, json};
use vault_client::files::Files;
use vault_client::groups::ops::{self, Members, member_fingerprint};
use vault_client::groups::people::{self, KeyReport};
use vault_client::groups::pins::PinSource;
use vault_client::state::StateDir;
use vault_core::proto::{GroupDetails, GroupSummary};
use vault_core::units::format_size;

use crate::args::{Command, GroupCommand, KeyCommand};
use crate::escape::shown;
use crate::listing::{plural, short_time};
use crate::out::outln;
use crate::warnings;

/// Parses a lifetime as people write it: a whole number and a unit, `s`, `m`, `h` or `d`
/// (`30m`, `12h`, `7d`). Returns seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let bad = || {
        anyhow::anyhow!(
            "invalid duration {text:?}: use a number and a unit, like 30m, 12h or 7d \
             (s, m, h, d)"
        )
    };
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(0) => bail!("a duration of zero is too short: use at least 1s"),
        Some(s) => Ok(s),
        None => Err(bad()),
    }
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    // Arguments are checked, and a deletion confirmed, before connecting.
    let expires_s = match &command {
        Command::Group {
            command: GroupCommand::Invite { expires, .. },
        } => Some(parse_duration(expires)?),
        _ => None,
    };
    if let Command::Group {
        command: GroupCommand::Delete { name, yes: false },
    } = &command
        && !confirm_delete(name)?
    {
        outln!("Left @{} as it was.", name.trim_start_matches('@'))?;
        return Ok(());
    }
    let state = StateDir::from_env()?;
    let files = Files::open(&state).await?;
    let result = match command {
        Command::Group { command } => group(&files, command, expires_s).await,
        Command::Key { command } => key(&files, command).await,
        other => Err(anyhow::anyhow!("not a group or key command: {other:?}")),
    };
    warnings::defer(files.take_warnings());
    files.close();
    result
}

/// Asks on a terminal whether to delete group `name`; without a terminal, `--yes` is
/// needed.
fn confirm_delete(name: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "deleting a group deletes every file in it for good: pass --yes to confirm \
             (`vault group delete {name} --yes`)"
        );
    }
    eprint!(
        "Delete group @{} and every file in it, for every member, for good? [y/N] ",
        name.trim_start_matches('@')
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn summary_json(g: &GroupSummary) -> Value {
    json!({
        "name": g.name,
        "role": g.role.as_str(),
        "members": g.members,
        "generation": g.generation,
        "has_key": g.has_key,
    })
}

fn details_json(d: &GroupDetails) -> Value {
    let g = &d.summary;
    json!({
        "name": g.name,
        "id": g.id,
        "role": g.role.as_str(),
        "members": g.members,
        "generation": g.generation,
        "has_key": g.has_key,
        "waiting": d.waiting,
        "rotation_pending": d.rotation_pending,
        "used_bytes": d.used_bytes,
        "quota_bytes": d.quota_bytes,
        "created_at": d.created_at,
    })
}

fn members_json(m: &Members) -> Value {
    Value::Array(
        m.members
            .iter()
            .map(|member| {
                json!({
                    "username": member.username,
                    "role": member.role.as_str(),
                    "has_key": member.has_key,
                    "joined_at": member.joined_at,
                    "fingerprint": member_fingerprint(member),
                })
            })
            .collect(),
    )
}

/// The key state of a group for the caller, in words.
fn key_state(g: &GroupSummary) -> String {
    match (g.generation, g.has_key) {
        (None, _) => "no key yet".into(),
        (Some(n), true) => format!("key generation {n}"),
        (Some(_), false) => "waiting for the key".into(),
    }
}

async fn group(files: &Files, command: GroupCommand, expires_s: Option<u64>) -> anyhow::Result<()> {
    match command {
        GroupCommand::Create { name } => {
            let created = ops::create(files, &name).await?;
            outln!(
                "Created group @{}; you are its owner.",
                shown(&created.name)
            )?;
            outln!(
                "Add members with `vault group add {0} USER`, or make a join code with \
                 `vault group invite {0}`.",
                shown(&created.name)
            )?;
        }
        GroupCommand::List { json } => {
            let groups = ops::list(files).await?;
            if json {
                let list: Vec<Value> = groups.iter().map(summary_json).collect();
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if groups.is_empty() {
                outln!("You are in no group; `vault group create NAME` makes one.")?;
            } else {
                for g in &groups {
                    outln!(
                        "@{:<32} {:<8} {:>12}  {}",
                        shown(&g.name),
                        g.role.as_str(),
                        plural(g.members, "member", "members"),
                        key_state(g)
                    )?;
                }
            }
        }
        GroupCommand::Info { name, json } => {
            let d = ops::info(files, &name).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&details_json(&d))?)?;
            } else {
                print_info(&d)?;
            }
        }
        GroupCommand::Members { name, json } => {
            let m = ops::members(files, &name).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&members_json(&m))?)?;
            } else {
                for member in &m.members {
                    let key = if member.has_key {
                        "has the key"
                    } else {
                        "waiting for the key"
                    };
                    outln!(
                        "{:<32} {:<8} {key:<19}  {}  joined {}",
                        shown(&member.username),
                        member.role.as_str(),
                        member_fingerprint(member),
                        short_time(member.joined_at)
                    )?;
                }
            }
        }
        GroupCommand::Invite { name, uses, .. } => {
            let expires_s = expires_s.unwrap_or(7 * 86_400);
            let invite = ops::invite(files, &name, uses, expires_s).await?;
            outln!("{}", invite.code.as_str())?;
            let group = ops::group_name(&name)?;
            eprintln!(
                "This join code lets {} join @{group} until {} UTC; `vault group join CODE` \
                 uses it.",
                plural(u64::from(invite.uses), "person", "people"),
                short_time(invite.expires_at)
            );
            eprintln!(
                "It carries the group's key: give it only to them, over a channel you trust. \
                 The secret half never reaches the server."
            );
        }
        GroupCommand::Join { code } => {
            let joined = ops::join(files, &code).await?;
            outln!("Joined @{}.", shown(&joined.name))?;
        }
        GroupCommand::Add { name, user } => {
            let added = ops::add(files, &name, &user).await?;
            let group = ops::group_name(&name)?;
            outln!(
                "Added {} to @{group} (their key {}).",
                shown(&added.username),
                added.fingerprint
            )?;
            if added.first_sight {
                eprintln!(
                    "{0}'s key was new to this client and is now recorded. Compare {1} with \
                     {0} in person or by phone, then run `vault key verify {0} {1}`.",
                    shown(&added.username),
                    added.fingerprint
                );
            }
        }
        GroupCommand::Remove { name, user } => {
            let group = ops::group_name(&name)?;
            let user = ops::username(&user)?;
            let removed = ops::remove(files, &group, &user).await?;
            match removed.rotated_to {
                Some(g) => outln!(
                    "Removed {user} from @{group}; the other members got key generation {g}, \
                     which new files use."
                )?,
                None => outln!("Removed {user} from @{group}.")?,
            }
        }
        GroupCommand::Leave { name } => {
            let group = ops::group_name(&name)?;
            ops::leave(files, &group).await?;
            outln!(
                "You left @{group}. The next member whose client connects makes a new key \
                 for the others, which new files use."
            )?;
        }
        GroupCommand::Role { name, user, role } => {
            let group = ops::group_name(&name)?;
            let user = ops::username(&user)?;
            ops::set_role(files, &group, &user, role).await?;
            outln!("{user} is now {role} of @{group}.")?;
        }
        GroupCommand::Rename { old, new } => {
            let old = ops::group_name(&old)?;
            let new = ops::rename(files, &old, &new).await?;
            outln!("Renamed @{old} to @{}.", shown(&new))?;
        }
        GroupCommand::Delete { name, .. } => {
            let group = ops::group_name(&name)?;
            ops::delete(files, &group).await?;
            outln!("Deleted @{group} and every file in it.")?;
        }
    }
    Ok(())
}

fn print_info(d: &GroupDetails) -> std::io::Result<()> {
    let g = &d.summary;
    outln!("@{} (id {})", shown(&g.name), g.id)?;
    outln!("your role:  {}", g.role)?;
    let waiting = if d.waiting > 0 {
        format!(" ({} waiting for the key)", d.waiting)
    } else {
        String::new()
    };
    outln!("members:    {}{waiting}", g.members)?;
    let pending = if d.rotation_pending {
        " (a member was removed; the next key generation comes with the next member's \
         client)"
    } else {
        ""
    };
    outln!("key:        {}{pending}", key_state(g))?;
    outln!(
        "quota:      {} of {} used",
        format_size(d.used_bytes),
        format_size(d.quota_bytes)
    )?;
    outln!("created:    {} UTC", short_time(d.created_at))
}

/// What this client trusts for a user's key, in words.
fn pin_state(r: &KeyReport) -> String {
    if r.own {
        return "your key".into();
    }
    match (&r.pin, r.matches_pin()) {
        (None, _) => "not seen by this client before".into(),
        (Some(p), Some(true)) => match p.source {
            PinSource::Verified => format!("verified by you on {} UTC", short_time(p.since)),
            PinSource::FirstSeen => format!(
                "recorded when first seen on {} UTC, not verified",
                short_time(p.since)
            ),
        },
        (Some(p), _) => format!(
            "DIFFERS from {} that this client trusts for {}",
            p.fingerprint,
            shown(&r.username)
        ),
    }
}

fn report_json(r: &KeyReport) -> Value {
    json!({
        "username": r.username,
        "fingerprint": r.fingerprint,
        "own": r.own,
        "trusted": r.pin.as_ref().map(|p| json!({
            "fingerprint": p.fingerprint,
            "verified": p.source == PinSource::Verified,
            "since": p.since,
        })),
        "matches_trusted": r.matches_pin(),
    })
}

async fn key(files: &Files, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Fingerprint { user, json } => {
            let report = people::fingerprint(files, user.as_deref()).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report_json(&report))?)?;
            } else {
                outln!(
                    "{}  {}: {}",
                    report.fingerprint,
                    shown(&report.username),
                    pin_state(&report)
                )?;
                if report.matches_pin() == Some(false) {
                    eprintln!(
                        "If {0} really has new keys, compare {1} with them in person or by \
                         phone and run `vault key verify {0} {1}`; until then no group key is \
                         wrapped for it.",
                        shown(&report.username),
                        report.fingerprint
                    );
                }
            }
        }
        KeyCommand::Verify { user, fingerprint } => {
            let verified = people::verify(files, &user, &fingerprint).await?;
            outln!(
                "Pinned {} as {}'s key (verified).",
                verified.fingerprint,
                shown(&verified.username)
            )?;
            if let Some(before) = verified
                .before
                .filter(|b| b.fingerprint != verified.fingerprint)
            {
                outln!(
                    "It replaces {}, which still verifies what {} signed with it before.",
                    before.fingerprint,
                    shown(&verified.username)
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use vault_core::proto::{ByteBuf, GroupRole, MemberInfo};

    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("30m").expect("m"), 1800);
        assert_eq!(parse_duration("12h").expect("h"), 43_200);
        assert_eq!(parse_duration("7d").expect("d"), 604_800);
        assert_eq!(parse_duration("45s").expect("s"), 45);
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            let e = parse_duration(bad).expect_err(bad).to_string();
            assert!(e.contains("30m, 12h or 7d"), "{bad:?}: {e}");
        }
        assert!(parse_duration("0h").is_err());
    }

    fn summary(generation: Option<u32>, has_key: bool) -> GroupSummary {
        GroupSummary {
            id: 3,
            name: "team".into(),
            role: GroupRole::Manager,
            members: 2,
            generation,
            has_key,
        }
    }

    #[test]
    fn the_json_shapes_are_the_documented_ones() {
        let list = summary_json(&summary(None, false));
        assert_eq!(
            list,
            json!({"name": "team", "role": "manager", "members": 2, "generation": null,
                   "has_key": false})
        );
        let details = GroupDetails {
            summary: summary(Some(1), true),
            created_at: 5,
            waiting: 1,
            rotation_pending: false,
            used_bytes: 10,
            quota_bytes: 20,
        };
        let info = details_json(&details);
        let keys: Vec<&str> = info
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = [
            "name",
            "id",
            "role",
            "members",
            "generation",
            "has_key",
            "waiting",
            "rotation_pending",
            "used_bytes",
            "quota_bytes",
            "created_at",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(info["generation"], 1);
        let members = Members {
            group_id: 3,
            generation: Some(1),
            members: vec![MemberInfo {
                username: "bob".into(),
                role: GroupRole::Member,
                has_key: false,
                joined_at: 7,
                public_key: ByteBuf::from(b"spki".to_vec()),
            }],
        };
        let m = members_json(&members);
        assert_eq!(m[0]["username"], "bob");
        assert_eq!(m[0]["role"], "member");
        assert_eq!(m[0]["has_key"], false);
        assert_eq!(m[0]["joined_at"], 7);
        assert!(
            m[0]["fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with("SHA256:")),
            "{m}"
        );
    }

    #[test]
    fn key_states_in_words() {
        assert_eq!(key_state(&summary(None, false)), "no key yet");
        assert_eq!(key_state(&summary(Some(2), true)), "key generation 2");
        assert_eq!(key_state(&summary(Some(2), false)), "waiting for the key");
    }
}
