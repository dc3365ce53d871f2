//! The socketioxide floor: what any socketioxide server pays per connection,
//! with nothing of Switchyard's on top. Same engine settings as Switchyard
//! (1 KiB WebSocket read buffer, 256-packet socket buffer), the same JWT
//! check, the same two automatic rooms and a `session` event, and no store,
//! presence, offline queue or replay.
//!
//! `bench/run.sh` runs it as the third server of the `connect` point
//! (`BENCH_SERVERS=... floor`): its connects/s and idle KiB per connection
//! bound what Switchyard can reach on socketioxide as it is.
//!
//! PORT (default 3103) and JWT_SECRET from the environment.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{Json, Router, routing::get};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef},
};

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(rename = "companyId")]
    company_id: String,
    role: String,
}

#[derive(Deserialize)]
struct Auth {
    token: String,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3103);
    let secret = std::env::var("JWT_SECRET").map_err(|_| "JWT_SECRET is required")?;
    let key = DecodingKey::from_secret(secret.as_bytes());
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();

    let (layer, io) = SocketIo::builder()
        .max_buffer_size(256)
        .ws_read_buffer_size(1024)
        .build_layer();
    let check = std::sync::Arc::new((key, validation));
    io.ns("/", async move |s: SocketRef, Data(auth): Data<Value>| {
        let (key, validation) = &*check;
        let claims = serde_json::from_value::<Auth>(auth)
            .ok()
            .and_then(|a| decode::<Claims>(&a.token, key, validation).ok())
            .map(|t| t.claims);
        let Some(c) = claims else {
            s.disconnect().ok();
            return;
        };
        s.join([
            format!("{}/company", c.company_id),
            format!("{}/user:{}", c.company_id, c.sub),
        ]);
        s.emit(
            "session",
            &json!({
                "socketId": s.id.to_string(),
                "userId": c.sub,
                "companyId": c.company_id,
                "role": c.role,
                "rooms": ["company", format!("user:{}", c.sub)],
                "serverTime": now_ms(),
                "replayed": 0,
                "denied": [],
            }),
        )
        .ok();
    });
    let app = Router::new()
        .route(
            "/health/websocket",
            get(|| async { Json(json!({ "status": "ok", "service": "websocket" })) }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
