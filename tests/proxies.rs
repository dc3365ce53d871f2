//! Client addresses behind reverse proxies (`TRUSTED_PROXIES`, issue: every
//! client behind nginx had nginx's address). From a peer that is not a
//! trusted proxy, `X-Forwarded-For` is the client's own claim and changes
//! nothing: spoofing it does not escape `WS_MAX_CONNECTIONS_PER_IP`. Behind
//! a trusted proxy each forwarded client has its own budgets on every path
//! that counts per IP (Socket.IO connections and unauthenticated engine
//! sessions, plain WebSocket, SSE, failed API keys) and the admin listing
//! shows its address. Requests "from an untrusted peer" come from
//! 127.0.0.2 while 127.0.0.1 is the trusted proxy (both are loopback).
//! `clients/tests/test/loadbalancer.test.js` runs it through real nginx.

mod common;

use std::time::Duration;

use common::client::{Client, ConnectError};
use serde_json::{Value, json};
use switchyard::domain::Role;

const XFF: &str = "x-forwarded-for";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
const ADMIN_KEY: &str = "proxies-admin-key";

async fn connect_as(app: &common::TestApp, token: &str, xff: &str) -> Result<Client, ConnectError> {
    Client::connect_with_headers(&app.url(), "", json!({ "token": token }), &[(XFF, xff)]).await
}

/// Connects and waits for `session`; panics if refused.
async fn connected(app: &common::TestApp, token: &str, xff: &str) -> Client {
    match connect_as(app, token, xff).await {
        Ok(mut c) => {
            c.expect("session").await;
            c
        }
        Err(e) => panic!("as {xff}: refused: {e:?}"),
    }
}

fn assert_limit_exceeded(result: Result<Client, ConnectError>, what: &str) {
    match result {
        Err(ConnectError::Refused(msg)) => {
            assert!(msg.starts_with("LIMIT_EXCEEDED"), "{what}: {msg}")
        }
        Ok(_) => panic!("{what}: admitted beyond WS_MAX_CONNECTIONS_PER_IP"),
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// An HTTP client whose requests leave from `ip` (a loopback address).
fn http_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client")
}

/// The `address` of every listed connection, sorted.
async fn listed_addresses(app: &common::TestApp) -> Vec<String> {
    let listing: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/admin/connections", app.url()))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("listing")
        .json()
        .await
        .expect("json");
    let mut addresses: Vec<String> = listing["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| c["address"].as_str().unwrap_or("null").to_string())
        .collect();
    addresses.sort();
    addresses
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_ip_limit() {
    // Nobody trusted (the default), or a proxy that is not this peer.
    for trusted in ["", "10.0.0.5"] {
        let app = common::spawn_app(
            &common::sqlite_url(),
            &[
                ("WS_MAX_CONNECTIONS_PER_IP", "2"),
                ("TRUSTED_PROXIES", trusted),
                ("ADMIN_API_KEYS", ADMIN_KEY),
            ],
        )
        .await;
        let token = app.token("u1", "acme", Role::Operator);
        let _a = connected(&app, &token, "198.51.100.1").await;
        let _b = connected(&app, &token, "198.51.100.2").await;
        assert_limit_exceeded(
            connect_as(&app, &token, "198.51.100.3").await,
            &format!("a third claimed address (TRUSTED_PROXIES={trusted:?})"),
        );
        // A claim that the peer is a trusted proxy relaying someone: no.
        assert_limit_exceeded(
            connect_as(&app, &token, "198.51.100.4, 10.0.0.5").await,
            "a forged proxy chain",
        );
        assert_eq!(listed_addresses(&app).await, ["127.0.0.1", "127.0.0.1"]);
        app.stop().await;
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("WS_MAX_CONNECTIONS_PER_IP", "2"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("ADMIN_API_KEYS", ADMIN_KEY),
        ],
    )
    .await;
    let token = app.token("u1", "acme", Role::Operator);
    let first = connected(&app, &token, "198.51.100.1").await;
    let _second = connected(&app, &token, "198.51.100.1").await;
    assert_limit_exceeded(
        connect_as(&app, &token, "198.51.100.1").await,
        "a third from one forwarded address",
    );
    // Another client behind the same proxy has a budget of its own; what a
    // client wrote itself, left of what the proxy appended, is not believed.
    let _c = connected(&app, &token, "198.51.100.2").await;
    let _d = connected(&app, &token, "198.51.100.1, 198.51.100.2").await;
    let _v6 = connected(&app, &token, "2001:db8::7").await;
    assert_eq!(
        listed_addresses(&app).await,
        [
            "198.51.100.1",
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.2",
            "2001:db8::7"
        ]
    );
    // The count is released under the same address it was taken under.
    first.disconnect();
    let mut readmitted = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(c) = connect_as(&app, &token, "198.51.100.1").await {
            readmitted = Some(c);
            break;
        }
    }
    assert!(
        readmitted.is_some(),
        "a slot freed by a disconnect is reused"
    );
    app.stop().await;
}

/// A Socket.IO polling handshake (an engine session that has not connected).
async fn polling_handshake(client: &reqwest::Client, app: &common::TestApp, xff: &str) -> u16 {
    client
        .get(format!("{}/socket.io/?EIO=4&transport=polling", app.url()))
        .header(XFF, xff)
        .send()
        .await
        .expect("handshake")
        .status()
        .as_u16()
}

/// A plain WebSocket without a token (waiting for its `auth` message): the
/// upgrade's status (101, or the refusal's).
async fn plain_waiting(app: &common::TestApp, xff: &str, keep: &mut Vec<Ws>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/ws", app.url().replacen("http", "ws", 1))
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert(XFF, xff.parse().expect("header value"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, res)) => {
            keep.push(ws);
            res.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("plain WebSocket as {xff}: {e}"),
    }
}

#[tokio::test]
async fn unauthenticated_sessions_are_counted_per_forwarded_client_only_behind_a_trusted_proxy() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("WS_MAX_PENDING_PER_IP", "2"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    let proxy = http_from([127, 0, 0, 1]);
    let stranger = http_from([127, 0, 0, 2]);
    // A reconnect storm behind the proxy: each client its own pending budget.
    let clients: Vec<String> = (1..=6).map(|n| format!("198.51.100.{n}")).collect();
    let behind: Vec<u16> = futures::future::join_all(
        clients
            .iter()
            .map(|xff| polling_handshake(&proxy, &app, xff)),
    )
    .await;
    assert_eq!(behind, [200; 6], "six clients behind the proxy");
    assert_eq!(polling_handshake(&proxy, &app, "198.51.100.1").await, 200);
    assert_eq!(
        polling_handshake(&proxy, &app, "198.51.100.1").await,
        429,
        "a third pending session of one forwarded client"
    );
    // An untrusted peer changing its claim each time is still one address.
    let mut spoofed = Vec::new();
    for n in 1..=3 {
        spoofed.push(polling_handshake(&stranger, &app, &format!("203.0.113.{n}")).await);
    }
    assert_eq!(spoofed, [200, 200, 429]);
    // The plain WebSocket's clients waiting for `auth`: the same rule.
    let mut open = Vec::new();
    assert_eq!(plain_waiting(&app, "198.51.100.9", &mut open).await, 101);
    assert_eq!(plain_waiting(&app, "198.51.100.9", &mut open).await, 101);
    assert_eq!(plain_waiting(&app, "198.51.100.9", &mut open).await, 429);
    assert_eq!(plain_waiting(&app, "198.51.100.10", &mut open).await, 101);
    app.stop().await;
}

#[tokio::test]
async fn sse_streams_and_failed_api_keys_count_per_forwarded_client() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("WS_MAX_CONNECTIONS_PER_IP", "1"),
            ("API_KEY_FAILURE_LIMIT", "2"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    let proxy = http_from([127, 0, 0, 1]);
    let stranger = http_from([127, 0, 0, 2]);
    let token = app.token("u1", "acme", Role::Operator);
    let stream = format!("{}/api/v1/stream?token={token}", app.url());
    let open = |client: &reqwest::Client, xff: &str| {
        client.get(&stream).header(XFF, xff.to_string()).send()
    };
    let a = open(&proxy, "198.51.100.1").await.expect("stream");
    assert_eq!(a.status(), 200);
    let again = open(&proxy, "198.51.100.1").await.expect("refusal");
    assert_eq!(
        again.status(),
        429,
        "a second stream of one forwarded client"
    );
    let b = open(&proxy, "198.51.100.2").await.expect("stream");
    assert_eq!(b.status(), 200, "another client behind the proxy");
    let s1 = open(&stranger, "203.0.113.1").await.expect("stream");
    assert_eq!(s1.status(), 200);
    let s2 = open(&stranger, "203.0.113.2").await.expect("refusal");
    assert_eq!(
        s2.status(),
        429,
        "an untrusted peer's claims are one address"
    );
    drop((a, b, s1));

    let history = format!("{}/api/v1/events?companyId=acme&room=company", app.url());
    let attempt = |client: &reqwest::Client, xff: &str, key: &str| {
        client
            .get(&history)
            .header(XFF, xff.to_string())
            .bearer_auth(key)
            .send()
    };
    let mut guesses = Vec::new();
    for n in 0..3 {
        let res = attempt(&proxy, "198.51.100.1", &format!("guess-{n}")).await;
        guesses.push(res.expect("answer").status().as_u16());
    }
    assert_eq!(
        guesses,
        [401, 401, 429],
        "one forwarded guesser is throttled"
    );
    let other = attempt(&proxy, "198.51.100.2", "test-key")
        .await
        .expect("answer");
    assert_eq!(
        other.status(),
        200,
        "its neighbours behind the proxy are not"
    );
    let mut spoofed = Vec::new();
    for n in 0..3 {
        let res = attempt(&stranger, &format!("203.0.113.{n}"), "guess").await;
        spoofed.push(res.expect("answer").status().as_u16());
    }
    assert_eq!(
        spoofed,
        [401, 401, 429],
        "rotating claims does not reset the count"
    );
    app.stop().await;
}

/// Rust files under `dir`.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The client address is derived in one place (`src/server`, with
/// `switchyard::client_ip::derive`) and read as `ClientIp` everywhere else:
/// code that reads the TCP peer (`ConnectInfo`) would count the proxy.
#[test]
fn nothing_reads_the_tcp_peer_but_the_accept_loop() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let mut derived = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let rel = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains("ConnectInfo") {
                found.push(format!("{rel}:{}", n + 1));
            }
            if code.contains("client_ip::derive(") {
                derived.push(rel.clone());
            }
        }
    }
    assert!(found.is_empty(), "reads of the TCP peer: {found:?}");
    assert_eq!(
        derived,
        ["server/mod.rs"],
        "where the client address is derived"
    );
}

#[tokio::test]
async fn with_forwarded_header_rfc_7239_names_the_client_and_x_forwarded_for_is_ignored() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("WS_MAX_CONNECTIONS_PER_IP", "1"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("FORWARDED_HEADER", "forwarded"),
            ("ADMIN_API_KEYS", ADMIN_KEY),
        ],
    )
    .await;
    let token = app.token("u1", "acme", Role::Operator);
    let via = |forwarded: &'static str, xff: &'static str| {
        let (url, token) = (app.url(), token.clone());
        async move {
            Client::connect_with_headers(
                &url,
                "",
                json!({ "token": token }),
                &[("forwarded", forwarded), (XFF, xff)],
            )
            .await
        }
    };
    let mut a = via("for=198.51.100.1;proto=https", "192.0.2.1")
        .await
        .expect("a");
    a.expect("session").await;
    let mut b = via("for=\"[2001:db8::7]:4711\"", "192.0.2.1")
        .await
        .expect("b");
    b.expect("session").await;
    // Same Forwarded client, another X-Forwarded-For: the same budget.
    assert_limit_exceeded(
        via("for=198.51.100.1", "192.0.2.2").await,
        "a second connection of one Forwarded client",
    );
    // A client's own `for=` left of the proxy's is not believed: refused
    // for 198.51.100.1's budget (at the handshake: its refused attempt
    // above is still counted as pending there).
    match via("for=203.0.113.9, for=198.51.100.1", "192.0.2.3").await {
        Err(ConnectError::Refused(msg)) => assert!(msg.starts_with("LIMIT_EXCEEDED"), "{msg}"),
        Err(ConnectError::Io(e)) => assert!(e.contains("429"), "{e}"),
        Ok(_) => panic!("a forged element before the proxy's was believed"),
    }
    // 203.0.113.9 itself, forwarded by the proxy, has a budget of its own.
    let mut c = via("for=203.0.113.9", "192.0.2.4").await.expect("c");
    c.expect("session").await;
    assert_eq!(
        listed_addresses(&app).await,
        ["198.51.100.1", "2001:db8::7", "203.0.113.9"]
    );
    app.stop().await;
}
