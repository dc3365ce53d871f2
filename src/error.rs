//! The error codes of the protocol and their one mapping to the wire.
//!
//! Every refusal in Switchyard is an [`AppError`]: a [`Code`] the client can
//! branch on plus a sentence a person understands. This module is the only
//! place that decides how an error looks in a socket ack, in a CONNECT_ERROR
//! and in an HTTP response.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

/// The protocol's error codes (SPEC §2–§8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Unauthorized,
    InvalidToken,
    TokenExpired,
    LimitExceeded,
    Forbidden,
    InvalidRoom,
    UnknownEvent,
    ValidationFailed,
    RateLimited,
    PayloadTooLarge,
    NotFound,
    Conflict,
    Unavailable,
    Internal,
    /// `command:send` names a command the catalog does not have.
    UnknownCommand,
    /// A catalog interlock refuses the command right now (SPEC §13).
    Interlocked,
    /// A command nobody answered before its deadline (in `command_status`,
    /// and for answers that come after it).
    Timeout,
}

impl Code {
    /// Every code, e.g. to register `websocket_refused_total{code}` at zero.
    pub const ALL: [Code; 17] = [
        Code::Unauthorized,
        Code::InvalidToken,
        Code::TokenExpired,
        Code::LimitExceeded,
        Code::Forbidden,
        Code::InvalidRoom,
        Code::UnknownEvent,
        Code::ValidationFailed,
        Code::RateLimited,
        Code::PayloadTooLarge,
        Code::NotFound,
        Code::Conflict,
        Code::Unavailable,
        Code::Internal,
        Code::UnknownCommand,
        Code::Interlocked,
        Code::Timeout,
    ];

    /// The codes of failed authentication (`websocket_auth_failures_total{reason}`).
    pub const AUTH_FAILURES: [Code; 3] =
        [Code::Unauthorized, Code::InvalidToken, Code::TokenExpired];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "UNAUTHORIZED",
            Code::InvalidToken => "INVALID_TOKEN",
            Code::TokenExpired => "TOKEN_EXPIRED",
            Code::LimitExceeded => "LIMIT_EXCEEDED",
            Code::Forbidden => "FORBIDDEN",
            Code::InvalidRoom => "INVALID_ROOM",
            Code::UnknownEvent => "UNKNOWN_EVENT",
            Code::ValidationFailed => "VALIDATION_FAILED",
            Code::RateLimited => "RATE_LIMITED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
            Code::UnknownCommand => "UNKNOWN_COMMAND",
            Code::Interlocked => "INTERLOCKED",
            Code::Timeout => "TIMEOUT",
        }
    }

    /// The code named by `s` (its wire form).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            Code::Unauthorized | Code::InvalidToken | Code::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::LimitExceeded | Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::InvalidRoom
            | Code::UnknownEvent
            | Code::UnknownCommand
            | Code::ValidationFailed => StatusCode::BAD_REQUEST,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Conflict | Code::Interlocked => StatusCode::CONFLICT,
            Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The WebSocket close code of a connection refused or ended with this
    /// code (plain-WebSocket transport): 4000 + the HTTP status, so 4401
    /// for authentication, 4403 for permissions, 4429 for limits.
    pub fn close_code(self) -> u16 {
        4000 + self.http_status().as_u16()
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal with its code, a human message and optional details
/// (e.g. which payload field failed validation).
#[derive(Debug, Clone, Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub code: Code,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds after which a refused request may be retried (HTTP
    /// `Retry-After`), for throttles that know it.
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Internal failures are logged with their cause; the client gets a fixed
    /// sentence so no internals leak.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(Code::Internal, "the server failed to handle this request")
    }

    /// Storage failures: durable operations answer UNAVAILABLE (SPEC §9).
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(%cause, "storage unavailable");
        crate::metrics::db_error();
        Self::new(
            Code::Unavailable,
            "storage is unavailable, retry later (durable operations are paused)",
        )
    }

    /// The `{ code, message, details? }` object used in acks and HTTP bodies.
    pub fn body(&self) -> Value {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(details) = &self.details {
            body["details"] = details.clone();
        }
        body
    }

    /// The ack a socket handler answers with: `{ ok: false, error }`.
    pub fn ack(&self) -> Value {
        json!({ "ok": false, "error": self.body() })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (
            self.code.http_status(),
            Json(json!({ "error": self.body() })),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_starts_with_the_code_for_connect_errors() {
        let e = AppError::new(Code::TokenExpired, "the token expired");
        assert_eq!(e.to_string(), "TOKEN_EXPIRED: the token expired");
    }

    #[test]
    fn ack_shape_has_ok_false_and_error_body() {
        let e = AppError::new(Code::ValidationFailed, "bad").with_details(json!({"field": "x"}));
        assert_eq!(
            e.ack(),
            json!({"ok": false, "error": {"code": "VALIDATION_FAILED", "message": "bad", "details": {"field": "x"}}})
        );
    }
}
