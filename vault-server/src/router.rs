//! The one router. [`route_of`] gives every [`Request`] variant its place in one
//! exhaustive match, so a new variant does not compile until it is routed, and decides
//! there, once per variant, whether it needs a session. [`route`] serves a one-frame
//! request by that decision: the connection answers `hello` itself and serves the
//! requests that carry bytes on their stream ([`Route::Stream`]) with the stream, after
//! [`require_session`].

use vault_proto::proto::{ApiError, Request, Response};

use crate::accounts::{self, session_refusal};
use crate::groups::Caller;
use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `hello`: answered by the connection, first and once.
    Hello,
    /// An account request that needs no session: registration, login, resume, reset.
    Open,
    /// Served with its stream by the connection, for a live session: `upload_data`,
    /// `chunk_put`, `chunk_get`, `download`, `chat_file_download` (bytes after the frame) and `subscribe` (the
    /// stream becomes an event stream).
    Stream,
    /// A one-frame request of a live session, served by an area.
    Session(Area),
}

/// The part of the server that serves a logged-in request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// `logout`, `whoami`, `change_password` ([`crate::accounts`]).
    Account,
    /// Listing, uploads, versions, trash, usage, changes ([`crate::files`]).
    Files,
    /// Public keys, groups and their keys ([`crate::groups`]).
    Groups,
    /// Profiles, contacts and chat ([`crate::chat`]).
    Chat,
}

/// Where `request` goes (see [`Route`]).
pub fn route_of(request: &Request) -> Route {
    use Request as R;
    match request {
        R::Hello { .. } => Route::Hello,
        R::Prelogin { .. }
        | R::RegisterStart { .. }
        | R::RegisterFinish { .. }
        | R::Login { .. }
        | R::Resume { .. }
        | R::ResetStart { .. }
        | R::ResetRecovery { .. }
        | R::ResetFinish { .. } => Route::Open,
        R::UploadData { .. }
        | R::ChunkPut { .. }
        | R::ChunkGet { .. }
        | R::Download { .. }
        | R::ChatFileDownload { .. }
        | R::Subscribe
        | R::WatchSpace { .. } => Route::Stream,
        R::Logout | R::Whoami | R::ChangePassword { .. } => Route::Session(Area::Account),
        R::List { .. }
        | R::Stat { .. }
        | R::Mkdir { .. }
        | R::UploadOpen { .. }
        | R::UploadStatus { .. }
        | R::UploadCommit { .. }
        | R::UploadAbort { .. }
        | R::UploadAbortBatch { .. }
        | R::UploadOpenMany { .. }
        | R::UploadPutMany { .. }
        | R::ChunksMissing { .. }
        | R::Versions { .. }
        | R::Restore { .. }
        | R::Remove { .. }
        | R::Move { .. }
        | R::TrashList { .. }
        | R::TrashRestore { .. }
        | R::TrashEmpty { .. }
        | R::Usage { .. }
        | R::Changes { .. } => Route::Session(Area::Files),
        R::UserKey { .. }
        | R::GroupCreate { .. }
        | R::GroupList
        | R::GroupInfo { .. }
        | R::GroupMembers { .. }
        | R::GroupKeys { .. }
        | R::GroupInviteCreate { .. }
        | R::GroupInviteOpen { .. }
        | R::GroupJoin { .. }
        | R::GroupAdd { .. }
        | R::GroupRemove { .. }
        | R::GroupLeave { .. }
        | R::GroupSetRole { .. }
        | R::GroupRename { .. }
        | R::GroupDelete { .. }
        | R::GroupRotate { .. }
        | R::GroupPutEnvelopes { .. }
        | R::KeyTasks => Route::Session(Area::Groups),
        R::ProfileSet { .. }
        | R::ContactAdd { .. }
        | R::ContactAccept { .. }
        | R::ContactReject { .. }
        | R::ContactRemove { .. }
        | R::ContactList
        | R::ContactGet { .. }
        | R::ChatSend { .. }
        | R::ChatHistory { .. }
        | R::ChatInbox
        | R::ChatGet { .. } => Route::Session(Area::Chat),
    }
}

/// Serves a one-frame request after `hello`, as [`route_of`] says.
pub async fn route(
    state: &ServerState,
    ctx: &ConnCtx,
    request: Request,
) -> Result<Response, ApiError> {
    match route_of(&request) {
        Route::Hello => Err(ApiError::bad_request(
            "hello was already sent on this connection",
        )),
        Route::Open => accounts::handle_open(state, ctx, request).await,
        Route::Stream => Err(ApiError::bad_request(format!(
            "{} is served with its own stream and cannot be sent here",
            request.kind()
        ))),
        Route::Session(Area::Account) => {
            let session = require_session(state, ctx).await?;
            accounts::handle_logged_in(state, ctx, session, request).await
        }
        Route::Session(_) => {
            let caller = Caller {
                session: require_session(state, ctx).await?,
                ip: ctx.ip.to_string(),
            };
            serve_session(state, &caller, request).await
        }
    }
}

/// Serves a one-frame request of a checked session in the files, groups or chat area
/// (the handler tests call it with a session of their own).
pub async fn serve_session(
    state: &ServerState,
    caller: &Caller,
    request: Request,
) -> Result<Response, ApiError> {
    match route_of(&request) {
        Route::Session(Area::Files) => {
            crate::files::dispatch(state, &caller.session, request).await
        }
        Route::Session(Area::Groups) => crate::groups::dispatch(state, caller, request).await,
        Route::Session(Area::Chat) => crate::chat::dispatch(state, &caller.session, request).await,
        Route::Hello | Route::Open | Route::Stream | Route::Session(Area::Account) => Err(
            ApiError::bad_request(format!("{} is not served here", request.kind())),
        ),
    }
}

/// The connection's session, checked against the database so that a session ended a
/// moment ago elsewhere is refused even before the watcher closes the connection.
pub async fn require_session(state: &ServerState, ctx: &ConnCtx) -> Result<SessionCtx, ApiError> {
    let session = ctx.session().ok_or_else(ApiError::not_logged_in)?;
    match session_refusal(state, session.session_id).await? {
        None => Ok(session),
        Some(refusal) => {
            ctx.set_session(state, None);
            Err(refusal)
        }
    }
}
