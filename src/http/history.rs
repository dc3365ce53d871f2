//! `GET /api/v1/events` by time range (issue 15 item 4):
//! `?companyId=&room=&types=a,b&from=&to=&limit=&cursor=`. `from`/`to` are
//! ISO-8601 (RFC 3339) or milliseconds since the epoch; `[from, to)`; `to`
//! defaults to now. Pages of `limit` (1-1000, default 100) in
//! `(timestamp, id)` order with an opaque `next` cursor; with
//! `Accept: application/x-ndjson` the whole range is streamed, one event
//! per line, read in keyset pages so memory stays flat whatever its size.
//! A request with none of `from`, `to`, `types`, `cursor` is the offset
//! history of `crate::http::events::history` (unchanged).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api_key::ApiKey;
use crate::domain::parse::invalid;
use crate::domain::{CompanyId, RoomName, iso8601, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;
use crate::store::{RangeEvent, RangeQuery, Store};

/// Events per page of an NDJSON export.
const EXPORT_PAGE: i64 = 1000;
const MAX_TYPES: usize = 50;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeParams {
    company_id: CompanyId,
    room: Option<String>,
    types: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Whether a query asks for a time range rather than offsets.
fn is_range(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            matches!(key, "from" | "to" | "types" | "cursor")
        })
    })
}

/// A time: milliseconds since the epoch, or RFC 3339.
pub fn parse_time(field: &str, raw: &str) -> AppResult<i64> {
    if let Ok(ms) = raw.parse::<i64>() {
        if ms < 0 {
            return Err(invalid(field, format!("`{field}` must not be negative")));
        }
        return Ok(ms);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            invalid(
                field,
                format!(
                    "`{field}` must be ISO-8601 (e.g. 2026-01-31T00:00:00Z) or epoch milliseconds"
                ),
            )
        })
}

/// The opaque cursor: the last `(created_at, id)` of a page.
pub fn encode_cursor(created_at: i64, id: &str) -> String {
    hex::encode(format!("{created_at}:{id}"))
}

pub fn decode_cursor(raw: &str) -> AppResult<(i64, String)> {
    let bad = || invalid("cursor", "`cursor` is not a cursor this API returned");
    let bytes = hex::decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_string()))
}

/// The parsed query, every field checked (errors name it).
fn range_query(p: RangeParams, now: i64) -> AppResult<RangeQuery> {
    let room = p
        .room
        .as_deref()
        .map(|r| {
            RoomName::parse(r)
                .map(|r| r.as_str().to_string())
                .map_err(|e| {
                    AppError::new(e.code, format!("`room`: {}", e.message))
                        .with_details(json!({ "field": "room" }))
                })
        })
        .transpose()?;
    let types: Vec<String> = p
        .types
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if types.len() > MAX_TYPES
        || types
            .iter()
            .any(|t| t.len() > crate::domain::event_type::MAX_TYPE_LEN)
    {
        return Err(invalid(
            "types",
            format!("`types` lists at most {MAX_TYPES} type names"),
        ));
    }
    let from = match p.from.as_deref() {
        Some(raw) => parse_time("from", raw)?,
        None => 0,
    };
    let to = match p.to.as_deref() {
        Some(raw) => parse_time("to", raw)?,
        None => now + 1,
    };
    if to <= from {
        return Err(invalid("to", "`to` must be after `from`"));
    }
    let limit = match p.limit {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(invalid("limit", "`limit` must be 1-1000")),
    };
    Ok(RangeQuery {
        company_id: p.company_id.as_str().to_string(),
        room,
        types,
        from,
        to,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        limit,
    })
}

fn event_json(e: &RangeEvent) -> Value {
    let mut v = json!({
        "id": e.id, "type": e.event_type, "payload": e.payload,
        "priority": e.priority, "source": e.source, "timestamp": iso8601(e.created_at),
    });
    if let Some(room) = &e.room {
        v["room"] = json!(room);
    }
    if let Some(offset) = e.offset {
        v["offset"] = json!(offset);
    }
    if let Some(p) = &e.publisher {
        v["publisher"] = json!(p);
    }
    v
}

/// The route: a time range, or the offset history.
pub async fn get(
    key: ApiKey,
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> AppResult<Response> {
    if !is_range(&uri) {
        let query = Query::try_from_uri(&uri);
        return super::events::history(key, State(state), query)
            .await
            .map(IntoResponse::into_response);
    }
    let Query(params) = Query::<RangeParams>::try_from_uri(&uri)
        .map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let q = range_query(params, now_ms())?;
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if ndjson {
        return Ok(export(state.store.clone(), q));
    }
    let events = state
        .store
        .events_in_range(&q)
        .await
        .map_err(AppError::unavailable)?;
    let next = (events.len() as i64 == q.limit)
        .then(|| events.last().map(|e| encode_cursor(e.created_at, &e.id)))
        .flatten();
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(json!({ "events": events, "next": next })).into_response())
}

/// The whole range as NDJSON, one keyset page in memory at a time. A
/// storage failure mid-way ends the body with an error (the client sees a
/// truncated transfer, not a short export that looks complete).
fn export(store: Arc<dyn Store>, mut q: RangeQuery) -> Response {
    q.limit = EXPORT_PAGE;
    let pages = futures::stream::unfold(Some(q), move |state| {
        let store = store.clone();
        async move {
            let mut q = state?;
            match store.events_in_range(&q).await {
                Err(e) => {
                    tracing::warn!(error = %e, "history export interrupted");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let full = events.len() as i64 == q.limit;
                    let mut chunk = Vec::with_capacity(events.len() * 256);
                    for e in &events {
                        // Serialising a Value into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut chunk, &event_json(e));
                        chunk.push(b'\n');
                    }
                    let next = match (full, events.last()) {
                        (true, Some(last)) => {
                            q.after = Some((last.created_at, last.id.clone()));
                            Some(q)
                        }
                        _ => None,
                    };
                    Some((Ok(Bytes::from(chunk)), next))
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_or_epoch_ms() {
        assert_eq!(parse_time("from", "0").unwrap(), 0);
        assert_eq!(
            parse_time("from", "1767225600000").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(
            parse_time("from", "2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(
            parse_time("to", "2026-01-01T01:00:00.5+01:00").unwrap(),
            1_767_225_600_500
        );
        for bad in ["yesterday", "2026-01-01", "-5", ""] {
            let e = parse_time("from", bad).unwrap_err();
            assert_eq!(e.details.unwrap()["field"], "from", "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = encode_cursor(1_767_225_600_000, "0192-abc");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (1_767_225_600_000, "0192-abc".into())
        );
        for bad in ["zz", "00", &hex::encode("no-colon"), &hex::encode("x:id")] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    fn params(pairs: &str) -> RangeParams {
        serde_urlencoded_from(pairs)
    }

    fn serde_urlencoded_from(q: &str) -> RangeParams {
        let uri: Uri = format!("/x?{q}").parse().unwrap();
        Query::<RangeParams>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn the_query_is_checked_field_by_field() {
        let q = range_query(
            params("companyId=acme&room=order:1&types=a,%20b,&from=0&to=10&limit=5"),
            99,
        )
        .unwrap();
        assert_eq!(q.room.as_deref(), Some("order:1"));
        assert_eq!(q.types, vec!["a", "b"]);
        assert_eq!((q.from, q.to, q.limit), (0, 10, 5));
        let q = range_query(params("companyId=acme&from=5"), 99).unwrap();
        assert_eq!((q.to, q.limit, q.after), (100, 100, None));
        for (query, field) in [
            ("companyId=acme&from=10&to=10", "to"),
            ("companyId=acme&from=x", "from"),
            ("companyId=acme&from=0&limit=0", "limit"),
            ("companyId=acme&from=0&limit=1001", "limit"),
            ("companyId=acme&from=0&cursor=zz", "cursor"),
            ("companyId=acme&from=0&room=bad%20room", "room"),
        ] {
            let e = range_query(params(query), 99).unwrap_err();
            assert_eq!(e.details.unwrap()["field"], field, "{query}");
        }
    }

    #[test]
    fn range_mode_only_with_range_parameters() {
        let uri = |q: &str| -> Uri { format!("/api/v1/events?{q}").parse().unwrap() };
        assert!(!is_range(&uri("companyId=a&room=r&after=3")));
        assert!(is_range(&uri("companyId=a&from=3")));
        assert!(is_range(&uri("companyId=a&types=x")));
        assert!(!is_range(&"/api/v1/events".parse().unwrap()));
    }
}
