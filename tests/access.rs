//! Who may knock and how often (issue 10): the per-user event rate, failed
//! API-key attempts per IP, and the Origin rule for browsers and native
//! clients (Socket.IO-Client-Swift's Starscream, python-socketio).

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::Value;
use switchyard::domain::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `n` pings without waiting and counts the ones answered with a pong.
async fn pongs(c: &mut Client, n: usize) -> usize {
    let ids: Vec<u64> = (0..n).map(|_| c.emit_ack_id("ping", Value::Null)).collect();
    let mut ok = 0;
    for id in ids {
        let ack = c.ack(id).await;
        if ack["pong"] == true {
            ok += 1;
        } else {
            assert_eq!(ack["error"]["code"], "RATE_LIMITED", "{ack}");
        }
    }
    ok
}

#[tokio::test]
async fn one_users_sockets_share_a_rate_limit() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("WS_RATE_LIMIT", "1"),
            ("WS_RATE_BURST", "5"),
            ("WS_USER_RATE_LIMIT", "1"),
            ("WS_USER_RATE_BURST", "6"),
        ],
    )
    .await;
    let token = app.token("u1", "acme", Role::Operator);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut c = Client::with_token(&app.url(), &token).await;
        c.expect("session").await;
        sockets.push(c);
    }
    let mut allowed = 0;
    for c in &mut sockets {
        allowed += pongs(c, 5).await;
    }
    // 3 sockets × a burst of 5 would be 15; the user's bucket holds 6 (plus
    // at most a few tokens refilled at 1/s while the test runs).
    assert!((6..=9).contains(&allowed), "{allowed} events admitted");
    // Another user of the same company is not affected.
    let mut other = Client::with_token(&app.url(), &app.token("u2", "acme", Role::Operator)).await;
    other.expect("session").await;
    assert_eq!(pongs(&mut other, 5).await, 5);
    app.stop().await;
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn failed_api_key_attempts_are_throttled_per_ip() {
    let app = common::spawn_app(&common::sqlite_url(), &[("API_KEY_FAILURE_LIMIT", "3")]).await;
    let url = format!("{}/api/v1/events?companyId=acme&room=company", app.url());
    let guesser = client_from([127, 0, 0, 1]);
    for i in 0..3 {
        let res = guesser
            .get(&url)
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    for key in ["guess-3", "test-key"] {
        let res = guesser.get(&url).bearer_auth(key).send().await.unwrap();
        assert_eq!(res.status(), 429, "{key} after the limit");
        let retry: u64 = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    }
    // Another address is not affected.
    let res = client_from([127, 0, 0, 2])
        .get(&url)
        .bearer_auth("test-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_origin_header_that_is_not_text_is_refused() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[("CORS_ORIGINS", "https://floor.example")],
    )
    .await;
    let res = reqwest::Client::new()
        .get(format!("{}/socket.io/?EIO=4&transport=polling", app.url()))
        .header(
            "origin",
            reqwest::header::HeaderValue::from_bytes(b"https://floor.example\xff").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    app.stop().await;
}

/// The WebSocket upgrade exactly as Starscream (Socket.IO-Client-Swift)
/// writes it: `Host: host:port` always with the port, `Origin` = the scheme
/// and authority of the socket URL, no `Sec-WebSocket-Protocol`. Returns the
/// status code and the stream.
async fn starscream_upgrade(
    addr: std::net::SocketAddr,
    host: &str,
    origin: &str,
    token: &str,
) -> (u16, tokio::net::TcpStream) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket&token={token} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Origin: {origin}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         \r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte))
            .await
            .expect("response within 5 s")
            .unwrap();
        assert_eq!(n, 1, "connection closed after {head:?}");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, tcp)
}

#[tokio::test]
async fn native_clients_that_send_the_servers_own_origin_are_allowed() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, protocol::Role as WsRole};
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[("CORS_ORIGINS", "https://floor.example")],
    )
    .await;
    let port = app.addr.port();
    let token = app.token("ios", "acme", Role::Operator);
    let own = format!("127.0.0.1:{port}");
    for origin in [
        format!("ws://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let (status, tcp) = starscream_upgrade(app.addr, &own, &origin, &token).await;
        assert_eq!(status, 101, "{origin}");
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(tcp, WsRole::Client, None).await;
        ws.send(Message::Text("40".into())).await.unwrap();
        let mut got_session = false;
        for _ in 0..10 {
            let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a frame within 5 s");
            if let Some(Ok(Message::Text(t))) = frame
                && t.starts_with("42[\"session\"")
            {
                got_session = true;
                break;
            }
        }
        assert!(got_session, "{origin}: no session");
    }
    // Same host, another port: another origin.
    let (status, _) = starscream_upgrade(
        app.addr,
        &own,
        &format!("ws://127.0.0.1:{}", port.wrapping_add(1)),
        &token,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = starscream_upgrade(app.addr, &own, "https://evil.example", &token).await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[test]
fn origin_rule_normalises_default_ports() {
    use switchyard::http::origin::allowed;
    let list = vec!["https://floor.example".to_string()];
    let yes = [
        ("wss://sy.example", "sy.example:443"),
        ("https://sy.example", "sy.example:443"),
        ("https://sy.example:443", "sy.example"),
        ("http://sy.example", "sy.example"),
        ("ws://sy.example:80", "sy.example"),
        ("http://SY.example:3001", "sy.example:3001"),
        ("http://[::1]:3001", "[::1]:3001"),
    ];
    for (origin, host) in yes {
        assert!(
            allowed(Some(&list), origin, Some(host)),
            "{origin} / {host}"
        );
        assert!(allowed(Some(&[]), origin, Some(host)), "{origin} / {host}");
    }
    let no = [
        ("http://sy.example", "sy.example:443"),
        ("https://sy.example:8443", "sy.example"),
        ("https://sy.example.evil", "sy.example"),
        ("https://evil.example", "sy.example"),
        ("null", "sy.example"),
        ("sy.example", "sy.example"),
    ];
    for (origin, host) in no {
        assert!(
            !allowed(Some(&list), origin, Some(host)),
            "{origin} / {host}"
        );
    }
    assert!(allowed(
        Some(&list),
        "https://floor.example",
        Some("sy.example")
    ));
    assert!(allowed(Some(&list), "https://floor.example", None));
    assert!(!allowed(Some(&list), "https://sy.example", None));
}
