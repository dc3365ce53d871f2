//! API-key authentication for the server-to-server HTTP API ([`crate::auth::api_key`]),
//! with failed attempts throttled per client address ([`crate::throttle::api_keys`]).
//! Two key sets: `API_KEYS` publish ([`ApiKey`]); `ADMIN_API_KEYS` administer
//! ([`AdminKey`]). Neither opens the other's routes.

use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::{AppError, Code};
use crate::secret::Secret;
use crate::state::AppState;

/// Proof that the request carried one of `API_KEYS` as a Bearer token.
pub struct ApiKey;

/// Proof that the request carried one of `ADMIN_API_KEYS` as a Bearer token.
pub struct AdminKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        check(parts, state, &state.config.api_keys, "API key").map(|()| ApiKey)
    }
}

impl FromRequestParts<AppState> for AdminKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        check(parts, state, &state.config.admin_api_keys, "admin API key").map(|()| AdminKey)
    }
}

/// Both key sets share one failure throttle per address, so guessing admin
/// keys costs the same budget as guessing publishing keys.
fn check(parts: &Parts, state: &AppState, keys: &[Secret], what: &str) -> Result<(), AppError> {
    let ip = crate::client_ip::of(&parts.extensions);
    let now = Instant::now();
    // Checked before the key: a blocked address learns nothing, even
    // from a valid key.
    if let Some(wait) = ip.and_then(|ip| state.key_failures.blocked(ip, now)) {
        crate::metrics::refused(Code::RateLimited.as_str());
        return Err(AppError::new(
            Code::RateLimited,
            "too many failed API-key attempts from this address; retry later",
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64));
    }
    let presented = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            AppError::new(
                Code::Unauthorized,
                format!("send an {what} as Authorization: Bearer <key>"),
            )
        })?;
    if crate::auth::api_key::is_valid(keys, presented) {
        return Ok(());
    }
    if let Some(ip) = ip {
        state.key_failures.failed(ip, now);
    }
    Err(AppError::new(
        Code::Unauthorized,
        format!("the {what} is not valid"),
    ))
}
