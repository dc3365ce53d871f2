//! API-key authentication for the server-to-server HTTP API.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::{AppError, Code};
use crate::state::AppState;

/// Proof that the request carried one of `API_KEYS` as a Bearer token.
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let presented = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                AppError::new(
                    Code::Unauthorized,
                    "send an API key as Authorization: Bearer <key>",
                )
            })?;
        // Compare every key fully so timing does not reveal a matching prefix.
        let ok = state.config.api_keys.iter().fold(false, |found, key| {
            found | constant_time_eq(key.as_bytes(), presented.as_bytes())
        });
        if ok {
            Ok(ApiKey)
        } else {
            Err(AppError::new(
                Code::Unauthorized,
                "the API key is not valid",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
