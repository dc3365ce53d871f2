//! A socket's life: authentication in the connect middleware, setup (rooms,
//! `session`), token refresh and expiry, and clean-up on disconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;

use super::rooms::automatic_rooms;
use super::session::Session;
use super::{Ctx, dispatch, replay};
use crate::domain::{Identity, RoomName, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;

/// The token, first found wins: `auth.token`, query `token`, `Authorization: Bearer`.
fn find_token<A: Adapter>(s: &SocketRef<A>, auth: &Value) -> Option<String> {
    if let Some(t) = auth.get("token").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    let parts = s.req_parts();
    let from_query = parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| percent_decode(v))
    });
    from_query.or_else(|| {
        parts
            .headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connect middleware: runs before CONNECT is answered, so a refusal reaches
/// the client as `connect_error` and a refused socket never has handlers.
/// On success it installs the session and the ordered event dispatcher.
pub async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), AppError> {
    let auth = auth.unwrap_or(Value::Null);
    let identity = match check(&s, &state, &auth) {
        Ok(identity) => identity,
        Err(e) => {
            tracing::debug!(code = %e.code, "connection refused");
            if matches!(
                e.code,
                Code::Unauthorized | Code::InvalidToken | Code::TokenExpired
            ) {
                crate::metrics::auth_failure(e.code.as_str());
            }
            crate::metrics::refused(e.code.as_str());
            close_refused(&s);
            return Err(e);
        }
    };
    let device_id = auth
        .get("deviceId")
        .and_then(Value::as_str)
        .filter(|d| crate::domain::identity::valid_id(d))
        .map(str::to_string);
    let ip = s
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let config = &state.config;
    if let Err(e) = state.limits.admit(
        ip,
        state.connections.load(Ordering::Acquire),
        config.max_connections,
        config.max_connections_per_ip,
    ) {
        tracing::debug!(?ip, "connection refused: {e}");
        crate::metrics::refused(e.code.as_str());
        close_refused(&s);
        return Err(e);
    }
    super::pending::authenticated(s.req_parts());
    let rate = super::session::Rates {
        socket: crate::limits::TokenBucket::new(config.rate_limit, config.rate_burst),
        user: (state.user_rates).bucket(&identity.company_id, &identity.user_id),
    };
    let resume = super::resume::plan_resume(
        &identity,
        &state.catalog,
        auth.get("offsets"),
        config.max_subscriptions,
    );
    let (session, worker) = Session::new(
        identity,
        device_id,
        resume.offsets.clone(),
        now_ms(),
        ip,
        rate,
    );
    state.workers.spawn(worker.run());
    // Setup is the first job in the queue, so every event the client sends
    // is handled after `session` went out.
    session.enqueue(Box::pin(welcome(
        Ctx::new(s.clone(), state.clone(), session.clone()),
        resume,
    )));
    s.extensions.insert(session.clone());
    dispatch::install(&s, &state, &session);
    s.on_disconnect(on_disconnect::<A>);
    state.connections.fetch_add(1, Ordering::AcqRel);
    crate::metrics::connection_opened();
    Ok(())
}

/// A refused connection is closed (after its CONNECT_ERROR went out) rather
/// than left open: socketioxide would keep it, forever for EIO=3.
fn close_refused<A: Adapter>(s: &SocketRef<A>) {
    super::pending::close_refused(s.req_parts(), s.id, s.transport_type(), s.protocol());
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

/// Runs after CONNECT was sent: the worker may now run the setup job.
pub async fn on_connect<A: Adapter>(s: SocketRef<A>, State(state): State<AppState>) {
    let Some(session) = s.extensions.get::<Arc<Session>>() else {
        return;
    };
    let _ = state;
    session.start();
}

/// Entity rooms named in `auth.offsets` are resumed too, as `subscribe`
/// would join them; `session.denied` says which were not and why.
async fn welcome<A: Adapter>(ctx: Ctx<A>, resume: super::resume::Resume) {
    let identity = ctx.session.identity();
    let automatic = automatic_rooms(&identity);
    let extra = resume.extra;
    ctx.socket.join(
        automatic
            .iter()
            .chain(&extra)
            .map(|r| r.internal(&identity.company_id))
            .chain([crate::domain::receive_room(
                &identity.company_id,
                identity.role,
            )])
            .collect::<Vec<_>>(),
    );
    let members = replay::replay_on_connect(&ctx, &extra).await;
    let replayed = ctx.state.durable.replay_merged(&members).await;
    crate::metrics::replayed(replayed as u64);
    // Registered before `session`: a client that has `session` is listed.
    crate::presence::join(&ctx.state, &ctx.session, ctx.socket.id, &extra).await;
    let session = json!({
        "socketId": ctx.socket.id.to_string(),
        "userId": identity.user_id,
        "companyId": identity.company_id,
        "role": identity.role,
        "rooms": automatic.iter().chain(&extra).map(RoomName::as_str).collect::<Vec<_>>(),
        "serverTime": now_ms(),
        "replayed": replayed,
        "denied": resume.denied,
    });
    if let Err(e) = ctx.socket.emit("session", &session) {
        tracing::debug!(error = %e, "could not emit session");
    }
    replay::go_live(&ctx, members);
    tokio::spawn(expiry_watch(ctx));
}

/// Emits `session:expired` and disconnects when `exp` (+ leeway) passes
/// without an `auth:refresh`.
async fn expiry_watch<A: Adapter>(ctx: Ctx<A>) {
    loop {
        let exp_ms = ctx.session.identity().expires_at.saturating_mul(1000);
        let deadline_ms = exp_ms.saturating_add(ctx.state.verifier.leeway_ms());
        let wait = (deadline_ms - now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {
                if ctx.session.identity().expires_at.saturating_mul(1000) != exp_ms {
                    continue; // refreshed while we slept
                }
                let _ = ctx.socket.emit(
                    "session:expired",
                    &json!({ "reason": "TOKEN_EXPIRED", "expiredAt": exp_ms }),
                );
                let _ = ctx.socket.clone().disconnect();
                return;
            }
            _ = ctx.session.refreshed.notified() => continue,
            _ = ctx.session.closed.cancelled() => return,
        }
    }
}

/// `auth:refresh { token }`: same user and company, later expiry.
pub async fn refresh<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let token = data
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::new(Code::ValidationFailed, "auth:refresh needs { token }"))?;
    let next = ctx.state.verifier.verify(token)?;
    let current = ctx.session.identity();
    if next.user_id != current.user_id || next.company_id != current.company_id {
        return Err(AppError::new(
            Code::Forbidden,
            "the new token must name the same user (sub) and companyId",
        ));
    }
    let expires_at = next.expires_at_ms();
    // A role change would need different automatic rooms; keep it simple and
    // explicit: the role of a live socket is fixed, reconnect to change it.
    if next.role != current.role {
        return Err(AppError::new(
            Code::Forbidden,
            "the new token has a different role; reconnect to change roles",
        ));
    }
    ctx.session.replace_identity(next);
    Ok(json!({ "ok": true, "expiresAt": expires_at }))
}

/// Per-socket clean-up. Also called by graceful shutdown, because
/// socketioxide's `io.close()` does not run disconnect handlers.
pub async fn cleanup<A: Adapter>(
    state: &AppState,
    socket_id: &str,
    session: &Session,
    reason: Option<DisconnectReason>,
) {
    if session.closed.is_cancelled() {
        return;
    }
    session.close();
    state.connections.fetch_sub(1, Ordering::AcqRel);
    crate::metrics::connection_closed();
    state.limits.release(session.ip);
    replay::leave(state, socket_id, session, reason).await;
    crate::presence::leave(state, socket_id).await;
}

async fn on_disconnect<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    reason: DisconnectReason,
) {
    if let Some(session) = s.extensions.get::<Arc<Session>>() {
        cleanup::<A>(&state, &s.id.to_string(), &session, Some(reason)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
