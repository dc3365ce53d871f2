//! A socket.io connection's life: authentication in the connect middleware
//! (refusals reach the client as `connect_error`), the session and its
//! sink, the first job (`api::open`), and `api::close` on disconnect.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;

use super::sink::SocketSink;
use super::{dispatch, pending};
use crate::domain::{Identity, SessionId, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::limits::TokenBucket;
use crate::session::{Opening, Rates, Session};
use crate::state::AppState;

/// The name this transport has in session listings.
pub const TRANSPORT: &str = "socketio";

/// The token, first found wins: `auth.token`, query `token`, `Authorization: Bearer`.
fn find_token<A: Adapter>(s: &SocketRef<A>, auth: &Value) -> Option<String> {
    if let Some(t) = auth.get("token").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    let parts = s.req_parts();
    crate::auth::token::from_query(parts.uri.query())
        .or_else(|| crate::auth::token::bearer(&parts.headers))
}

fn check<A: Adapter>(s: &SocketRef<A>, state: &AppState, auth: &Value) -> AppResult<Identity> {
    if state.is_shutting_down() {
        return Err(AppError::new(
            Code::Unavailable,
            "server is shutting down; reconnect to another node",
        ));
    }
    let token = find_token(s, auth).ok_or_else(|| {
        AppError::new(
            Code::Unauthorized,
            "no token: send it as auth.token, the `token` query parameter or an Authorization: Bearer header",
        )
    })?;
    state.verifier.verify(&token)
}

/// Counts and closes a refused connection, and hands the refusal back.
fn refuse<A: Adapter>(s: &SocketRef<A>, e: AppError) -> Result<(), AppError> {
    tracing::debug!(code = %e.code, "connection refused: {}", e.message);
    if matches!(
        e.code,
        Code::Unauthorized | Code::InvalidToken | Code::TokenExpired
    ) {
        crate::metrics::auth_failure(e.code.as_str());
    }
    crate::metrics::refused(e.code.as_str());
    // Closed (after its CONNECT_ERROR went out) rather than left open:
    // socketioxide would keep it, forever for EIO=3.
    pending::close_refused(s.req_parts(), s.id, s.transport_type(), s.protocol());
    Err(e)
}

/// Connect middleware: runs before CONNECT is answered, so a refusal reaches
/// the client as `connect_error` and a refused socket never has handlers.
/// On success it opens the session and installs the ordered dispatcher.
pub async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), AppError> {
    let auth = auth.unwrap_or(Value::Null);
    let identity = match check(&s, &state, &auth) {
        Ok(identity) => identity,
        Err(e) => return refuse(&s, e),
    };
    let ip = crate::client_ip::of(&s.req_parts().extensions);
    let config = &state.config;
    let admitted = state.limits.admit(
        ip,
        state.sessions.len(),
        config.max_connections,
        config.max_connections_per_ip,
    );
    if let Err(e) = admitted {
        return refuse(&s, e);
    }
    pending::authenticated(s.req_parts());
    let resume = crate::rooms::resume::plan_resume(
        &identity,
        &state.catalog,
        auth.get("offsets"),
        config.max_subscriptions,
    );
    let opening = opening(&s, &state, &auth, identity, ip);
    let role = opening.identity.role;
    let (session, worker) = Session::new(opening, state.tasks.child_token());
    session.set_sink(Arc::new(SocketSink::new(
        s.clone(),
        role,
        state.clone(),
        &session,
    )));
    state.sessions.insert(&state.tasks, session.clone(), worker);
    // Setup is the first job in the queue, so every request the client
    // sends is handled after `session` went out.
    let (st, se) = (state.clone(), session.clone());
    session.enqueue(Box::pin(
        async move { crate::api::open(&st, &se, resume).await },
    ));
    s.extensions.insert(session.clone());
    dispatch::install(&s, &state, &session);
    s.on_disconnect(on_disconnect::<A>);
    crate::metrics::connection_opened();
    Ok(())
}

/// What the session starts with.
fn opening<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    auth: &Value,
    identity: Identity,
    ip: Option<std::net::IpAddr>,
) -> Opening {
    let config = &state.config;
    Opening {
        id: SessionId::parse(s.id.as_str()).unwrap_or_default(),
        transport: TRANSPORT,
        device_id: auth
            .get("deviceId")
            .and_then(Value::as_str)
            .filter(|d| crate::domain::identity::valid_id(d))
            .map(str::to_string),
        connected_at: now_ms(),
        ip,
        rates: Rates {
            session: TokenBucket::new(config.rate_limit, config.rate_burst),
            user: state
                .user_rates
                .bucket(&identity.company_id, &identity.user_id),
        },
        identity,
    }
}

/// Runs after CONNECT was sent: the worker may now run the setup job.
pub async fn on_connect<A: Adapter>(s: SocketRef<A>) {
    if let Some(session) = s.extensions.get::<Arc<Session>>() {
        session.start();
    }
}

async fn on_disconnect<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    reason: DisconnectReason,
) {
    let Some(session) = s.extensions.get::<Arc<Session>>() else {
        return;
    };
    // socketioxide keeps the socket (its engine channel, buffers and tasks,
    // most of a connection's memory) until this handler returns, and the
    // clean-up waits on the database (cursors, presence). In a reconnect
    // storm those writes queue for seconds, and holding 10,000 dead sockets
    // through them nearly doubled the server's RSS. So the clean-up runs on
    // its own, tracked so shutdown still waits for it.
    let reason = format!("{reason:?}");
    let tasks = state.tasks.clone();
    tasks.spawn_until_done(async move {
        crate::api::close(&state, &session, &reason).await;
    });
}
