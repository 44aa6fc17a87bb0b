//! Request and response messages. Encoded as CBOR with serde's external tagging:
//! a unit variant is a text string (`"logout"`), any other a one-entry map
//! (`{"hello": {"protocol_version": 2}}`). Byte fields are CBOR byte strings. `EntryInfo`
//! and `VersionInfo` are arrays of their fields (see their docs).
//! `tests/vectors/wire/` pins the encoding; change it only with a protocol version bump.

use serde::{Deserialize, Serialize};

use super::chat::{ChatMessage, ChatTarget, ContactInfo, Conversation, Event, SealedMessage};
use super::files::{
    BatchResult, Change, CommittedFile, EntryInfo, NsRef, OpenFile, OpenedUpload, PutFile, Rename,
    TrashItem, Usage, VersionInfo,
};
use super::groups::{
    EnvelopeInfo, GroupDetails, GroupRole, GroupSummary, InviteInfo, KeyTask, MemberInfo,
    NewEnvelope, Rotation, UserKey,
};
use super::{ApiError, SecretBytes};
use crate::kdf::KdfParams;

/// Everything a client can ask. The first request on a connection must be `Hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Hello {
        protocol_version: u32,
    },
    /// The salt and KDF parameters for a username (a stable fake for unknown names).
    Prelogin {
        username: String,
    },
    /// Registration step 1: mail a verification code to `email`; or, with an invitation's
    /// code, check it and mail nothing (step 2 then sends the same code).
    RegisterStart {
        username: String,
        email: String,
        /// Absent on the wire when not given, as older clients send it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<String>,
    },
    /// Registration step 2: the mailed code and the client-made key material.
    RegisterFinish {
        username: String,
        code: String,
        account: NewAccount,
    },
    Login {
        username: String,
        auth_key: SecretBytes,
    },
    /// Binds an existing session to this connection.
    Resume {
        token: SecretBytes,
    },
    Logout,
    Whoami,
    /// Proves the old password and replaces the password material. Ends other sessions.
    ChangePassword {
        old_auth_key: SecretBytes,
        new: PasswordMaterial,
    },
    /// Password reset step 1: mail a code to the account's address (the answer does not
    /// say whether the account exists).
    ResetStart {
        username: String,
    },
    /// With a valid reset code, returns the account key sealed by the recovery key.
    ResetRecovery {
        username: String,
        code: String,
    },
    /// Password reset step 2: consumes the code and installs the new material.
    ResetFinish {
        username: String,
        code: String,
        reset: ResetMaterial,
    },
    /// Lists a directory (`dir` = encrypted path, `""` = root), sorted by encrypted path,
    /// in pages: pass the previous page's `next` as `after`. With `before`, only paths
    /// that sort before it: a client lists two ranges at once to have both cores busy.
    /// With `names_only`, files come without `current` and with `version_count` 0: what
    /// `ls` shows without `-l` (a server that predates the field sends everything).
    List {
        ns: NsRef,
        dir: String,
        recursive: bool,
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        names_only: bool,
    },
    /// One live entry by encrypted path.
    Stat {
        ns: NsRef,
        path: String,
    },
    /// Creates a directory and any missing parents; an existing directory is fine.
    Mkdir {
        ns: NsRef,
        path: String,
    },
    /// Starts an upload of `sealed_size` ciphertext bytes to `path`: checks the quota and
    /// reserves the next version number of the file (created, invisible, if new).
    UploadOpen {
        ns: NsRef,
        path: String,
        sealed_size: u64,
        /// Format 2: the sealed bytes of the chunks this version will store (those the
        /// space lacks), checked against the quota and the disk with `sealed_size` and
        /// held for the upload until it commits or expires.
        #[serde(default, skip_serializing_if = "is_zero_u64")]
        chunk_bytes: u64,
        /// The client's token for this request, as for `upload_open_many` (a batch of
        /// one): recorded before the request is sent, so that the next command aborts
        /// the upload with `upload_abort_batch` should this one die before it recorded
        /// the upload's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<String>,
        /// Commit only while the file's current version is this one (0: while the path
        /// holds no file); else the open, or later the commit, is refused with `conflict`.
        /// `vault sync` sends the version it last saw, so that an edit made elsewhere
        /// meanwhile becomes a conflict copy instead of being followed silently.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_current: Option<u64>,
    },
    /// How many bytes of an upload the server holds (always whole sealed chunks).
    UploadStatus {
        upload_id: i64,
    },
    /// Followed on the stream by raw sealed bytes starting at `offset`, which must be what
    /// `upload_status` reports.
    UploadData {
        upload_id: i64,
        offset: u64,
    },
    /// Makes the upload the file's current version, atomically. A version of format 2
    /// names the ids of its chunks (in any order, at most
    /// [`super::files::MAX_COMMIT_CHUNKS`]), all of which the space must hold; its own
    /// blob is then its sealed chunk list (docs/FORMAT.md §7.11).
    UploadCommit {
        upload_id: i64,
        wrapped_key: ByteBuf,
        sealed_meta: ByteBuf,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        chunks: Vec<ByteBuf>,
    },
    /// Which of these chunk ids the space does not hold (at most
    /// [`super::files::CHUNKS_PER_QUERY`]); answered by `chunks_missing`.
    ChunksMissing {
        ns: NsRef,
        ids: Vec<ByteBuf>,
    },
    /// Followed on the stream by exactly `sealed_size` bytes: one sealed chunk, stored
    /// under `id` in the space unless it holds that id already. Answered by `ok`.
    ChunkPut {
        ns: NsRef,
        id: ByteBuf,
        sealed_size: u64,
        /// The caller's open upload this chunk is for: its reservation (`chunk_bytes` of
        /// `upload_open`) shrinks by `sealed_size` once the space holds the chunk, so that
        /// bytes already counted as stored are not also held as still to come.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload_id: Option<i64>,
    },
    /// One sealed chunk of the space: answered by a `chunk` header frame, then its bytes.
    ChunkGet {
        ns: NsRef,
        id: ByteBuf,
    },
    UploadAbort {
        upload_id: i64,
    },
    /// `upload_open` for many small files of one space at once (at most
    /// [`super::files::BATCH_MAX_FILES`], each at most [`super::files::SMALL_FILE_MAX`]
    /// sealed bytes), in one transaction; answered by `uploads_opened`.
    ///
    /// `batch` is the client's token for this request ([`super::files::BATCH_TOKEN_LEN`]
    /// lowercase hex digits, fresh for every request), recorded before it is sent: should
    /// the client die before the answer, the next command aborts what the token opened
    /// with `upload_abort_batch`.
    UploadOpenMany {
        ns: NsRef,
        files: Vec<OpenFile>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<String>,
    },
    /// Aborts every unfinished upload `upload_open_many` or `upload_open` opened with this
    /// token, and refuses a later request that carries it (for ten minutes), so that a
    /// request of a killed client still on its way cannot open uploads after it.
    UploadAbortBatch {
        batch: String,
    },
    /// The whole sealed contents, wrapped keys and metadata of uploads opened by
    /// `upload_open_many` (of one space); every file that is in order becomes current in
    /// one transaction. Answered by `uploads_committed`.
    UploadPutMany {
        files: Vec<PutFile>,
    },
    /// Sealed contents from chunk `from_chunk` of `version` (default: the current one).
    Download {
        ns: NsRef,
        path: String,
        version: Option<u64>,
        from_chunk: u64,
    },
    Versions {
        ns: NsRef,
        path: String,
    },
    /// Makes a kept version current again.
    Restore {
        ns: NsRef,
        path: String,
        version: u64,
    },
    /// Moves an entry (with `recursive`, a whole directory) to the trash.
    Remove {
        ns: NsRef,
        path: String,
        recursive: bool,
    },
    /// Renames an entry and, for a directory, every entry under it: the first rename is
    /// the moved entry, the rest its descendants (names depend on their parent path).
    Move {
        ns: NsRef,
        renames: Vec<Rename>,
    },
    TrashList {
        ns: NsRef,
    },
    TrashRestore {
        ns: NsRef,
        trash_id: i64,
    },
    TrashEmpty {
        ns: NsRef,
    },
    Usage {
        ns: NsRef,
    },
    /// Entries changed after revision `since`, in (revision, id) order, in pages.
    Changes {
        ns: NsRef,
        since: u64,
        after: Option<ChangeCursor>,
    },
    /// A user's public key (to wrap group keys for them, or to compare fingerprints).
    UserKey {
        username: String,
    },
    /// Creates a group with the caller as owner; its first key comes with `group_rotate`
    /// (generation 0), since envelopes name the group id this answer carries.
    GroupCreate {
        name: String,
    },
    /// The caller's groups.
    GroupList,
    GroupInfo {
        group: String,
    },
    GroupMembers {
        group: String,
    },
    /// The caller's own envelopes of every generation.
    GroupKeys {
        group: String,
    },
    /// Makes a join code: the server keeps a hash of `auth` and the sealed keys.
    GroupInviteCreate {
        group: String,
        auth: SecretBytes,
        sealed_keys: ByteBuf,
        uses: u32,
        expires_s: u64,
    },
    /// Shows an invite to the holder of its code (uses nothing up).
    GroupInviteOpen {
        invite_id: i64,
        auth: SecretBytes,
    },
    /// Joins with a join code, with the caller's own envelopes of the invite's keys.
    GroupJoin {
        invite_id: i64,
        auth: SecretBytes,
        envelopes: Vec<NewEnvelope>,
    },
    /// Adds a member with an envelope of every generation.
    GroupAdd {
        group: String,
        username: String,
        envelopes: Vec<NewEnvelope>,
    },
    /// Removes a member; `rotation` is the next generation for everyone who stays.
    GroupRemove {
        group: String,
        username: String,
        rotation: Option<Rotation>,
    },
    /// The caller leaves; `rotation` is the next generation for everyone who stays.
    GroupLeave {
        group: String,
        rotation: Option<Rotation>,
    },
    GroupSetRole {
        group: String,
        username: String,
        role: GroupRole,
    },
    GroupRename {
        group: String,
        new_name: String,
    },
    /// Deletes the group and every file in it (owner only).
    GroupDelete {
        group: String,
    },
    /// A new key generation for every member: the first key, or a rotation the server
    /// asked for in a [`KeyTask`].
    GroupRotate {
        group: String,
        rotation: Rotation,
    },
    /// Envelopes for members who lack them (key healing).
    GroupPutEnvelopes {
        group: String,
        envelopes: Vec<NewEnvelope>,
    },
    /// Key work the caller's client can do for others.
    KeyTasks,
    /// Sets (or with `None`, clears) the caller's display name.
    ProfileSet {
        display_name: Option<String>,
    },
    /// Asks `username` to become a contact (accepts, if they asked first).
    ContactAdd {
        username: String,
    },
    ContactAccept {
        username: String,
    },
    ContactReject {
        username: String,
    },
    /// Ends a contact relationship (or withdraws a request) on both sides.
    ContactRemove {
        username: String,
    },
    ContactList,
    /// The caller's relationship with one user: `contacts` holds it, or nothing when there
    /// is none (what a message send needs, without the whole list).
    ContactGet {
        username: String,
    },
    /// Stores and relays a message made by the caller's client.
    ChatSend {
        message: SealedMessage,
    },
    /// A conversation's messages, newest first, before message id `before`; marks what it
    /// returns as read.
    ChatHistory {
        target: ChatTarget,
        limit: u32,
        before: Option<i64>,
    },
    /// Conversations with their unread counts, newest first.
    ChatInbox,
    /// One message the caller has a delivery of (as sender or reader), answered by
    /// `chat_messages` with that one message.
    ChatGet {
        id: i64,
    },
    /// The sealed contents of the file message `message_id` carries, from chunk
    /// `from_chunk`: answered like `download` (a `download` header, then the bytes).
    ChatFileDownload {
        message_id: i64,
        from_chunk: u64,
    },
    /// Turns this stream into an event stream (`subscribed`, then `event` frames).
    Subscribe,
    /// Turns this stream into the revision feed of one space: `watching {revision}` (the
    /// space's revision now), then a `space_changed {revision}` frame whenever it moves.
    /// A reader that falls behind gets only the newest revision; what changed is for
    /// `changes` to tell.
    WatchSpace {
        ns: NsRef,
    },
}

impl Request {
    /// A short name for logs and spans; never includes field values.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Prelogin { .. } => "prelogin",
            Self::RegisterStart { .. } => "register_start",
            Self::RegisterFinish { .. } => "register_finish",
            Self::Login { .. } => "login",
            Self::Resume { .. } => "resume",
            Self::Logout => "logout",
            Self::Whoami => "whoami",
            Self::ChangePassword { .. } => "change_password",
            Self::ResetStart { .. } => "reset_start",
            Self::ResetRecovery { .. } => "reset_recovery",
            Self::ResetFinish { .. } => "reset_finish",
            Self::List { .. } => "list",
            Self::Stat { .. } => "stat",
            Self::Mkdir { .. } => "mkdir",
            Self::UploadOpen { .. } => "upload_open",
            Self::UploadStatus { .. } => "upload_status",
            Self::UploadData { .. } => "upload_data",
            Self::UploadCommit { .. } => "upload_commit",
            Self::UploadAbort { .. } => "upload_abort",
            Self::UploadAbortBatch { .. } => "upload_abort_batch",
            Self::UploadOpenMany { .. } => "upload_open_many",
            Self::UploadPutMany { .. } => "upload_put_many",
            Self::ChunksMissing { .. } => "chunks_missing",
            Self::ChunkPut { .. } => "chunk_put",
            Self::ChunkGet { .. } => "chunk_get",
            Self::Download { .. } => "download",
            Self::Versions { .. } => "versions",
            Self::Restore { .. } => "restore",
            Self::Remove { .. } => "remove",
            Self::Move { .. } => "move",
            Self::TrashList { .. } => "trash_list",
            Self::TrashRestore { .. } => "trash_restore",
            Self::TrashEmpty { .. } => "trash_empty",
            Self::Usage { .. } => "usage",
            Self::Changes { .. } => "changes",
            Self::UserKey { .. } => "user_key",
            Self::GroupCreate { .. } => "group_create",
            Self::GroupList => "group_list",
            Self::GroupInfo { .. } => "group_info",
            Self::GroupMembers { .. } => "group_members",
            Self::GroupKeys { .. } => "group_keys",
            Self::GroupInviteCreate { .. } => "group_invite_create",
            Self::GroupInviteOpen { .. } => "group_invite_open",
            Self::GroupJoin { .. } => "group_join",
            Self::GroupAdd { .. } => "group_add",
            Self::GroupRemove { .. } => "group_remove",
            Self::GroupLeave { .. } => "group_leave",
            Self::GroupSetRole { .. } => "group_set_role",
            Self::GroupRename { .. } => "group_rename",
            Self::GroupDelete { .. } => "group_delete",
            Self::GroupRotate { .. } => "group_rotate",
            Self::GroupPutEnvelopes { .. } => "group_put_envelopes",
            Self::KeyTasks => "key_tasks",
            Self::ProfileSet { .. } => "profile_set",
            Self::ContactAdd { .. } => "contact_add",
            Self::ContactAccept { .. } => "contact_accept",
            Self::ContactReject { .. } => "contact_reject",
            Self::ContactRemove { .. } => "contact_remove",
            Self::ContactList => "contact_list",
            Self::ContactGet { .. } => "contact_get",
            Self::ChatSend { .. } => "chat_send",
            Self::ChatHistory { .. } => "chat_history",
            Self::ChatInbox => "chat_inbox",
            Self::ChatGet { .. } => "chat_get",
            Self::ChatFileDownload { .. } => "chat_file_download",
            Self::Subscribe => "subscribe",
            Self::WatchSpace { .. } => "watch_space",
        }
    }
}

/// Everything a server can answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol_version: u32,
        server_version: String,
    },
    Ok,
    Prelogin {
        salt: ByteBuf,
        kdf: KdfParams,
    },
    /// A code was mailed; new accounts must use KDF parameters at least this strong.
    RegisterStarted {
        kdf: KdfParams,
        code_ttl_s: u64,
    },
    /// A session was opened or resumed on this connection.
    LoggedIn(LoggedIn),
    Whoami(AccountInfo),
    ResetRecovery {
        account_key_by_recovery: ByteBuf,
    },
    /// A reset code was mailed if the account exists.
    ResetStarted {
        code_ttl_s: u64,
    },
    /// One page of a listing; `next` is the `after` of the following page.
    Listing {
        entries: Vec<EntryInfo>,
        next: Option<String>,
    },
    Entry(EntryInfo),
    UploadOpened {
        upload_id: i64,
        /// The file's id and the reserved version: both go into the wrapped key's
        /// associated data.
        file_id: i64,
        version: u64,
        generation: u32,
        /// Unix seconds after which an unfinished upload may be collected.
        expires_at: i64,
    },
    UploadStatus {
        received: u64,
        sealed_size: u64,
    },
    /// One result per file of `upload_open_many`, in request order.
    UploadsOpened {
        results: Vec<BatchResult<OpenedUpload>>,
    },
    /// One result per file of `upload_put_many`, in request order.
    UploadsCommitted {
        results: Vec<BatchResult<CommittedFile>>,
    },
    /// The indexes (into the request's `ids`) of the chunks the space does not hold.
    ChunksMissing {
        missing: Vec<u32>,
    },
    /// Header of `chunk_get`; the chunk's sealed bytes follow on the stream.
    Chunk {
        sealed_size: u64,
    },
    /// Header of a download; the sealed bytes follow on the stream.
    Download {
        file_id: i64,
        version: VersionInfo,
        /// Byte offset in the sealed contents where the following bytes start.
        offset: u64,
    },
    Versions {
        file_id: i64,
        current: u64,
        versions: Vec<VersionInfo>,
    },
    Trashed {
        trash_id: i64,
        entries: u64,
    },
    Trash {
        items: Vec<TrashItem>,
    },
    TrashEmptied {
        items: u64,
        sealed_bytes: u64,
    },
    Usage(Usage),
    Changes {
        /// The namespace's revision when the page was read.
        revision: u64,
        changes: Vec<Change>,
        /// Pass as `after` to read the next page; `None` when this was the last.
        next: Option<ChangeCursor>,
        /// Entries were purged after `since`: the client must compare a full listing.
        resync: bool,
    },
    UserKey(UserKey),
    GroupCreated {
        group_id: i64,
        name: String,
    },
    Groups {
        groups: Vec<GroupSummary>,
    },
    GroupInfo(GroupDetails),
    GroupMembers {
        group_id: i64,
        /// The key generation in force; `None` until the first key is made.
        generation: Option<u32>,
        members: Vec<MemberInfo>,
    },
    GroupKeys {
        group_id: i64,
        generation: Option<u32>,
        envelopes: Vec<EnvelopeInfo>,
    },
    InviteCreated {
        invite_id: i64,
        expires_at: i64,
    },
    InviteOpened(InviteInfo),
    GroupJoined {
        group_id: i64,
        name: String,
    },
    KeyTasks {
        tasks: Vec<KeyTask>,
    },
    Contacts {
        contacts: Vec<ContactInfo>,
    },
    ChatSent {
        id: i64,
        received_at_ms: i64,
    },
    /// Newest first.
    ChatMessages {
        messages: Vec<ChatMessage>,
    },
    Inbox {
        conversations: Vec<Conversation>,
    },
    /// The answer to `subscribe`; `event` frames follow on the stream.
    Subscribed,
    /// The answer to `watch_space`: the space's revision now; `space_changed` frames
    /// follow on the stream.
    Watching {
        revision: u64,
    },
    /// The watched space's revision moved to `revision`.
    SpaceChanged {
        revision: u64,
    },
    Event(Event),
    Error(ApiError),
}

/// Where a page of the change feed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCursor {
    pub revision: u64,
    pub id: i64,
}

/// Byte strings that are not secret (sealed blobs, public keys, salts).
pub type ByteBuf = serde_bytes::ByteBuf;

/// The password-derived material the server stores: the salt and parameters, the auth
/// key (which the server hashes again), and the account key sealed under the KEK.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordMaterial {
    pub salt: ByteBuf,
    pub kdf: KdfParams,
    pub auth_key: SecretBytes,
    pub account_key_by_kek: ByteBuf,
}

/// Everything a new account (or a reset that discards old data) sends. All of it is made
/// by the client; nothing here opens user data without the password or recovery key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAccount {
    pub password: PasswordMaterial,
    pub account_key_by_recovery: ByteBuf,
    /// RSA-3072 public key, SubjectPublicKeyInfo DER.
    pub public_key: ByteBuf,
    /// PKCS#8 DER of the private key, sealed under the account key.
    pub private_key_sealed: ByteBuf,
}

/// How a password reset treats the existing keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetMaterial {
    /// The client opened the account key with the recovery key: keep all keys, replace
    /// only the password material.
    KeepKeys { password: PasswordMaterial },
    /// Fresh keys: everything sealed under the old account key becomes unreadable.
    DiscardEncryptedData { account: NewAccount },
}

/// The answer to `login` and `resume`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedIn {
    /// The session token (only on `login`; `resume` already has it).
    pub token: Option<SecretBytes>,
    pub keys: AccountKeys,
    /// How many pieces of group-key work the client could do for others (`key_tasks`):
    /// a group without a key, a rotation after a removal, members without envelopes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub key_tasks: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The sealed key material a client needs to unlock an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountKeys {
    pub username: String,
    pub account_key_by_kek: ByteBuf,
    pub public_key: ByteBuf,
    pub private_key_sealed: ByteBuf,
}

/// The answer to `whoami`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub username: String,
    pub email: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub created_at: i64,
    pub sessions: u64,
}
