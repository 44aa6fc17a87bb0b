//! Key healing (docs/FORMAT.md §8.6): the group-key work the server has for this client
//! (`key_tasks`): the first key of a group that has none, a new generation after a
//! member was removed without one, and envelopes for members who lack generations the
//! caller holds. It runs when the session says there is work (`LoggedIn.key_tasks`),
//! from [`Files::open`]. Nothing here fails the user's command: each failure becomes a
//! warning ([`Files::warn`]), and a `conflict` answer means another client did the work
//! first.

use vault_core::proto::{KeyTask, Request, Response};

use super::identity::Trust;
use super::{keyring, seal};
use crate::files::{Files, FilesError, unexpected};

/// What a task does, for warnings.
fn describe(task: &KeyTask) -> String {
    match task {
        KeyTask::FirstKey { group, .. } => format!("make the first key of @{group}"),
        KeyTask::Rotate {
            group,
            next_generation,
            ..
        } => format!("make key generation {next_generation} of @{group}"),
        KeyTask::Wrap { group, member, .. } => {
            format!("give {} the key of @{group}", member.username)
        }
    }
}

fn group_of(task: &KeyTask) -> &str {
    match task {
        KeyTask::FirstKey { group, .. }
        | KeyTask::Rotate { group, .. }
        | KeyTask::Wrap { group, .. } => group,
    }
}

/// Does every task the server has for this client; failures become warnings on `files`.
pub async fn heal(files: &Files) {
    let tasks = match files.call(&Request::KeyTasks).await {
        Ok(Response::KeyTasks { tasks }) => tasks,
        Ok(other) => {
            files.warn(format!(
                "could not read the group-key work for this client: {}",
                unexpected("key_tasks", &other)
            ));
            return;
        }
        Err(e) => {
            files.warn(format!(
                "could not read the group-key work for this client: {e}"
            ));
            return;
        }
    };
    for task in &tasks {
        match run(files, task).await {
            Ok(()) => files.forget_group_keys(group_of(task)),
            // Another member's client did it first.
            Err(e) if e.api_code() == Some("conflict") => {
                files.forget_group_keys(group_of(task));
            }
            Err(e) => files.warn(format!("could not {}: {e}", describe(task))),
        }
    }
}

/// Does one task.
async fn run(files: &Files, task: &KeyTask) -> Result<(), FilesError> {
    let trust = Trust {
        me: files.me()?,
        pins: files.pins(),
    };
    let request = match task {
        KeyTask::FirstKey {
            group_id,
            group,
            members,
        } => Request::GroupRotate {
            group: group.clone(),
            rotation: seal::rotation(&trust, *group_id, 0, members)?,
        },
        KeyTask::Rotate {
            group_id,
            group,
            next_generation,
            members,
        } => Request::GroupRotate {
            group: group.clone(),
            rotation: seal::rotation(&trust, *group_id, *next_generation, members)?,
        },
        KeyTask::Wrap {
            group_id,
            group,
            member,
            generations,
        } => {
            let ring = keyring::fetch(files, group).await?;
            if ring.group_id != *group_id {
                return Err(FilesError::Integrity(format!(
                    "the server named group {group_id} in the task but returned the keys of \
                     group {}",
                    ring.group_id
                )));
            }
            let held: Vec<_> = generations
                .iter()
                .filter_map(|g| ring.keys().get(g).map(|k| (*g, k)))
                .collect();
            if held.is_empty() {
                return Err(FilesError::Usage(format!(
                    "this client holds none of the generations {generations:?} that {} lacks",
                    member.username
                )));
            }
            Request::GroupPutEnvelopes {
                group: group.clone(),
                envelopes: seal::envelopes_for(&trust, *group_id, member, &held)?,
            }
        }
    };
    files.call(&request).await.map(|_| ())
}
