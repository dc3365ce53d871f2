//! PostgreSQL append of a whole group-commit batch in a fixed number of
//! statements, however many events it carries.
//!
//! One statement per event meant three round trips per event with the
//! room's counter row locked throughout, so a batch of 40 events held the
//! lock for 120 round trips plus the flush. Here a batch costs at most five
//! statements: claim the idempotency keys (only when there are any), read
//! the first results of keys already claimed (only when some were), advance
//! each room's counter once by the number of events it gets, then insert
//! the events, their room rows and the keys' results in one statement.
//! Offsets stay gapless and in commit order: the counter upsert takes the
//! row locks (in one fixed order, so two nodes cannot deadlock) and holds
//! them until commit, exactly as before; a batch that fails rolls back
//! whole, counters included.
//!
//! A batch without idempotency keys and webhooks (the common case: every
//! publish from a socket without `idempotencyKey`) is one statement and no
//! explicit transaction: the counters' upsert, the events and their room
//! rows in one `WITH` (atomic on its own), offsets computed in SQL from the
//! heads the upsert returns. That is one round trip instead of four (BEGIN,
//! counters, rows, COMMIT), each of which also waited for the server's one
//! busy worker to pick the answer up.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Connection, PgConnection, Postgres, Row, Transaction, types::Json};

use super::{Appended, NewEvent, StoreError, in_request_order, lock_order};

/// Both appends' events insert, a CTE named `e` reading `$1`–`$9` (bound
/// by [`bind_events`]); a macro so `concat!` can build each statement.
macro_rules! events_cte {
    () => {
        "e AS (
           INSERT INTO events (id, company_id, type, payload, priority, source, publisher, created_at, expires_at)
           SELECT i, c, t, p::jsonb, pr, s, pb, ca, ea
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::int8[])
             AS u(i, c, t, p, pr, s, pb, ca, ea)
         )"
    };
}

pub(super) async fn append(
    conn: &mut PgConnection,
    batch: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    if batch
        .iter()
        .all(|e| e.idempotency_key.is_none() && e.webhooks.is_empty())
    {
        return append_plain(conn, batch).await;
    }
    let mut tx = conn.begin().await?;
    let plan = Keys::of(&batch);
    let (claimed, earlier) = claim_keys(&mut tx, &batch, &plan).await?;
    let fresh: Vec<usize> = (0..batch.len())
        .filter(|&i| match (&batch[i].idempotency_key, plan.first.get(&i)) {
            (None, _) => true,
            (Some(_), Some(pair)) => claimed.contains(pair),
            (Some(_), None) => false,
        })
        .collect();
    let counts = room_counts(&batch, &fresh);
    let heads = advance_counters(&mut tx, &counts).await?;
    let assigned = assign_offsets(&batch, &fresh, &counts, &heads)?;
    insert_rows(&mut tx, &batch, &assigned, &plan, &claimed).await?;
    // Webhook deliveries of the events appended here (not of duplicates).
    let hooked: Vec<&NewEvent> = assigned
        .keys()
        .map(|&i| &batch[i])
        .filter(|e| !e.webhooks.is_empty())
        .collect();
    super::postgres_webhooks::enqueue_in(&mut tx, &hooked).await?;
    tx.commit().await?;
    results(&batch, assigned, &plan, &earlier)
}

/// The one-statement append of a batch without idempotency keys or
/// webhooks (see the module's documentation).
async fn append_plain(
    conn: &mut PgConnection,
    batch: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    let every: Vec<usize> = (0..batch.len()).collect();
    let counts = room_counts(&batch, &every);
    // Each event's rank in each of its rooms (1..n): the offsets it would
    // get if every room's counter were at 0, so the order is the one
    // `assign_offsets` gives, and SQL adds where the counter really was.
    let ranks = assign_offsets(
        &batch,
        &every,
        &counts,
        &counts.iter().map(|(k, n)| (k.clone(), *n)).collect(),
    )?;
    let mut rows = RoomRows::default();
    for (&i, offsets) in &ranks {
        let ev = &batch[i];
        for (room, rank) in offsets {
            let n = counts
                .get(&(ev.company_id.clone(), room.clone()))
                .copied()
                .unwrap_or_default();
            rows.company.push(ev.company_id.as_str());
            rows.room.push(room.clone());
            rows.rank.push(*rank);
            rows.count.push(n);
            rows.event.push(ev.id.as_str());
            rows.expires.push(ev.expires_at);
            rows.created.push(ev.created_at);
        }
    }
    let events: Vec<&NewEvent> = batch.iter().collect();
    let query = sqlx::query(concat!(
        "WITH ",
        events_cte!(),
        ", c AS (
           INSERT INTO room_offsets (company_id, room, last_offset)
           SELECT c, r, n FROM UNNEST($10::text[], $11::text[], $12::int8[]) WITH ORDINALITY AS u(c, r, n, o)
           ORDER BY o
           ON CONFLICT (company_id, room)
           DO UPDATE SET last_offset = room_offsets.last_offset + EXCLUDED.last_offset
           RETURNING company_id, room, last_offset
         ), r AS (
           INSERT INTO event_rooms (company_id, room, \"offset\", event_id, expires_at, created_at)
           SELECT u.c, u.r, c.last_offset - u.n + u.k, u.i, u.ea, u.ca
           FROM UNNEST($13::text[], $14::text[], $15::int8[], $16::int8[], $17::text[], $18::int8[], $19::int8[])
             AS u(c, r, k, n, i, ea, ca)
           JOIN c ON c.company_id = u.c AND c.room = u.r
         )
         SELECT company_id, room, last_offset FROM c"
    ));
    let rows_written = bind_events(query, &events)?
        .bind(counts.keys().map(|k| k.0.as_str()).collect::<Vec<_>>())
        .bind(counts.keys().map(|k| k.1.as_str()).collect::<Vec<_>>())
        .bind(counts.values().copied().collect::<Vec<_>>())
        .bind(&rows.company)
        .bind(&rows.room)
        .bind(&rows.rank)
        .bind(&rows.count)
        .bind(&rows.event)
        .bind(&rows.expires)
        .bind(&rows.created)
        .fetch_all(conn)
        .await?;
    let heads = rows_written
        .iter()
        .map(|row| {
            let key = (row.try_get("company_id")?, row.try_get("room")?);
            Ok((key, row.try_get("last_offset")?))
        })
        .collect::<Result<HashMap<(String, String), i64>, sqlx::Error>>()?;
    let assigned = assign_offsets(&batch, &every, &counts, &heads)?;
    results(&batch, assigned, &Keys::of(&batch), &HashMap::new())
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds the nine `events` columns of `events` as `$1`–`$9`, the order
/// [`events_cte`] reads them; it must be the query's first binding.
fn bind_events<'q>(query: PgQuery<'q>, events: &[&'q NewEvent]) -> Result<PgQuery<'q>, StoreError> {
    let payloads = events
        .iter()
        .map(|e| serde_json::to_string(&e.payload))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
    Ok(query
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.company_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(payloads)
        .bind(
            events
                .iter()
                .map(|e| e.priority.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.publisher.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.created_at).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.expires_at).collect::<Vec<_>>()))
}

/// Columns of the room rows of [`append_plain`].
#[derive(Default)]
struct RoomRows<'a> {
    company: Vec<&'a str>,
    room: Vec<String>,
    rank: Vec<i64>,
    count: Vec<i64>,
    event: Vec<&'a str>,
    expires: Vec<i64>,
    created: Vec<i64>,
}

/// The batch's idempotency keys: the first event carrying each
/// `(company, key)`, and later events of the same batch repeating one.
struct Keys {
    /// event index → its `(company, key)`, for first occurrences only.
    first: HashMap<usize, (String, String)>,
    /// event index → index of the earlier event with the same key.
    repeats: HashMap<usize, usize>,
}

impl Keys {
    fn of(batch: &[NewEvent]) -> Self {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let mut first = HashMap::new();
        let mut repeats = HashMap::new();
        for (i, ev) in batch.iter().enumerate() {
            let Some(key) = &ev.idempotency_key else {
                continue;
            };
            let pair = (ev.company_id.clone(), key.clone());
            match seen.get(&pair) {
                Some(&earlier) => {
                    repeats.insert(i, earlier);
                }
                None => {
                    seen.insert(pair.clone(), i);
                    first.insert(i, pair);
                }
            }
        }
        Self { first, repeats }
    }
}

/// Claims every key in one statement (sorted, so concurrent claimers lock
/// in one order); a key another transaction holds is waited for, then
/// seen as taken. Returns the keys claimed and the stored first results of
/// the others.
async fn claim_keys(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewEvent],
    plan: &Keys,
) -> Result<
    (
        HashSet<(String, String)>,
        HashMap<(String, String), Appended>,
    ),
    StoreError,
> {
    let mut firsts: Vec<(&(String, String), i64)> = plan
        .first
        .iter()
        .map(|(&i, pair)| (pair, batch[i].created_at))
        .collect();
    if firsts.is_empty() {
        return Ok((HashSet::new(), HashMap::new()));
    }
    firsts.sort();
    let pairs: Vec<&(String, String)> = firsts.iter().map(|f| f.0).collect();
    let companies: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let keys: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let created: Vec<i64> = firsts.iter().map(|f| f.1).collect();
    let claimed: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (company_id, key, result, created_at)
         SELECT c, k, NULL, t FROM UNNEST($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS u(c, k, t, n)
         ORDER BY n
         ON CONFLICT DO NOTHING
         RETURNING company_id, key",
    )
    .bind(&companies)
    .bind(&keys)
    .bind(&created)
    .fetch_all(&mut **tx)
    .await?;
    let claimed: HashSet<(String, String)> = claimed.into_iter().collect();
    let taken: Vec<&&(String, String)> = pairs.iter().filter(|p| !claimed.contains(**p)).collect();
    let mut earlier = HashMap::new();
    if !taken.is_empty() {
        let companies: Vec<&str> = taken.iter().map(|p| p.0.as_str()).collect();
        let keys: Vec<&str> = taken.iter().map(|p| p.1.as_str()).collect();
        let rows: Vec<(String, String, Option<Json<Appended>>)> = sqlx::query_as(
            "SELECT k.company_id, k.key, k.result FROM idempotency_keys k
             JOIN UNNEST($1::text[], $2::text[]) AS u(c, k) ON k.company_id = u.c AND k.key = u.k",
        )
        .bind(&companies)
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await?;
        for (company, key, result) in rows {
            let first = result
                .ok_or_else(|| StoreError::Corrupt(format!("idempotency key {key} has no result")))?
                .0;
            earlier.insert((company, key), first);
        }
    }
    Ok((claimed, earlier))
}

/// How many offsets each `(company, room)` needs, in lock order (bytewise,
/// the same on every node).
fn room_counts(batch: &[NewEvent], fresh: &[usize]) -> BTreeMap<(String, String), i64> {
    let mut counts = BTreeMap::new();
    for &i in fresh {
        for room in lock_order(&batch[i].rooms) {
            *counts
                .entry((batch[i].company_id.clone(), room))
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Advances each counter once by its count; returns the new heads.
async fn advance_counters(
    tx: &mut Transaction<'_, Postgres>,
    counts: &BTreeMap<(String, String), i64>,
) -> Result<HashMap<(String, String), i64>, StoreError> {
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    let companies: Vec<&str> = counts.keys().map(|k| k.0.as_str()).collect();
    let rooms: Vec<&str> = counts.keys().map(|k| k.1.as_str()).collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    // ORDER BY the array position: the rows are locked in the order given.
    let heads: Vec<(String, String, i64)> = sqlx::query_as(
        "INSERT INTO room_offsets (company_id, room, last_offset)
         SELECT c, r, n FROM UNNEST($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS u(c, r, n, o)
         ORDER BY o
         ON CONFLICT (company_id, room)
         DO UPDATE SET last_offset = room_offsets.last_offset + EXCLUDED.last_offset
         RETURNING company_id, room, last_offset",
    )
    .bind(&companies)
    .bind(&rooms)
    .bind(&ns)
    .fetch_all(&mut **tx)
    .await?;
    Ok(heads
        .into_iter()
        .map(|(c, r, head)| ((c, r), head))
        .collect())
}

/// Offsets for the fresh events in batch order: each room's block
/// `head - count + 1 ..= head` handed out in turn.
fn assign_offsets(
    batch: &[NewEvent],
    fresh: &[usize],
    counts: &BTreeMap<(String, String), i64>,
    heads: &HashMap<(String, String), i64>,
) -> Result<BTreeMap<usize, Vec<(String, i64)>>, StoreError> {
    let mut next: HashMap<(String, String), i64> = HashMap::with_capacity(counts.len());
    for (pair, n) in counts {
        let head = heads
            .get(pair)
            .ok_or_else(|| StoreError::Corrupt(format!("no counter returned for {}", pair.1)))?;
        next.insert(pair.clone(), head - n + 1);
    }
    let mut assigned = BTreeMap::new();
    for &i in fresh {
        let ev = &batch[i];
        let mut offsets = Vec::with_capacity(ev.rooms.len());
        for room in lock_order(&ev.rooms) {
            let pair = (ev.company_id.clone(), room);
            let slot = next
                .get_mut(&pair)
                .ok_or_else(|| StoreError::Corrupt(format!("no counter for {}", pair.1)))?;
            offsets.push((pair.1, *slot));
            *slot += 1;
        }
        assigned.insert(i, offsets);
    }
    Ok(assigned)
}

/// Events, room rows and the claimed keys' results in one statement.
async fn insert_rows(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewEvent],
    assigned: &BTreeMap<usize, Vec<(String, i64)>>,
    plan: &Keys,
    claimed: &HashSet<(String, String)>,
) -> Result<(), StoreError> {
    if assigned.is_empty() {
        return Ok(());
    }
    let events: Vec<&NewEvent> = assigned.keys().map(|&i| &batch[i]).collect();
    let (mut r_company, mut r_room, mut r_offset, mut r_event, mut r_expires, mut r_created) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut k_company, mut k_key, mut k_result) = (Vec::new(), Vec::new(), Vec::new());
    for (&i, offsets) in assigned {
        let ev = &batch[i];
        for (room, offset) in offsets {
            r_company.push(ev.company_id.as_str());
            r_room.push(room.as_str());
            r_offset.push(*offset);
            r_event.push(ev.id.as_str());
            r_expires.push(ev.expires_at);
            r_created.push(ev.created_at);
        }
        if let Some(pair) = plan.first.get(&i).filter(|p| claimed.contains(*p)) {
            let appended = Appended {
                id: ev.id.clone(),
                offsets: in_request_order(&ev.rooms, offsets),
                duplicate: false,
            };
            k_company.push(pair.0.as_str());
            k_key.push(pair.1.as_str());
            k_result.push(
                serde_json::to_string(&appended)
                    .map_err(|e| StoreError::Corrupt(format!("result: {e}")))?,
            );
        }
    }
    // The room rows reference events inserted by the sibling CTE: foreign
    // keys are checked at the end of the statement, when both are in.
    let query = sqlx::query(concat!(
        "WITH ",
        events_cte!(),
        ", r AS (
           INSERT INTO event_rooms (company_id, room, \"offset\", event_id, expires_at, created_at)
           SELECT c, r, o, i, ea, ca FROM UNNEST($10::text[], $11::text[], $12::int8[], $13::text[], $14::int8[], $18::int8[])
             AS u(c, r, o, i, ea, ca)
         )
         UPDATE idempotency_keys k SET result = u.res::jsonb
         FROM UNNEST($15::text[], $16::text[], $17::text[]) AS u(c, k, res)
         WHERE k.company_id = u.c AND k.key = u.k"
    ));
    bind_events(query, &events)?
        .bind(r_company)
        .bind(r_room)
        .bind(r_offset)
        .bind(r_event)
        .bind(r_expires)
        .bind(k_company)
        .bind(k_key)
        .bind(k_result)
        .bind(r_created)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Each event's result in batch order: its own offsets, or the first
/// result of its key (`duplicate`), from an earlier transaction or from an
/// earlier event of this batch.
fn results(
    batch: &[NewEvent],
    mut assigned: BTreeMap<usize, Vec<(String, i64)>>,
    plan: &Keys,
    earlier: &HashMap<(String, String), Appended>,
) -> Result<Vec<Appended>, StoreError> {
    let mut out: Vec<Appended> = Vec::with_capacity(batch.len());
    for (i, ev) in batch.iter().enumerate() {
        let result = if let Some(offsets) = assigned.remove(&i) {
            Appended {
                id: ev.id.clone(),
                offsets: in_request_order(&ev.rooms, &offsets),
                duplicate: false,
            }
        } else if let Some(&first) = plan.repeats.get(&i) {
            let mut first = out
                .get(first)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("repeated key before its first".into()))?;
            first.duplicate = true;
            first
        } else {
            let pair = plan
                .first
                .get(&i)
                .ok_or_else(|| StoreError::Corrupt(format!("event {} has no result", ev.id)))?;
            let mut first = earlier.get(pair).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency key {} has no result", pair.1))
            })?;
            first.duplicate = true;
            first
        };
        out.push(result);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, rooms: &[&str], key: Option<&str>) -> NewEvent {
        NewEvent {
            id: id.into(),
            company_id: "c".into(),
            event_type: "t".into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            payload: json!({}),
            priority: "medium".into(),
            source: "test".into(),
            publisher: None,
            created_at: 1,
            expires_at: 2,
            idempotency_key: key.map(String::from),
            webhooks: Vec::new(),
        }
    }

    #[test]
    fn each_room_block_is_handed_out_in_batch_order() {
        let batch = vec![
            ev("a", &["x", "y"], None),
            ev("b", &["y"], Some("k")),
            ev("c", &["y"], Some("k")),
            ev("d", &["x"], None),
        ];
        let plan = Keys::of(&batch);
        assert_eq!(plan.repeats.get(&2), Some(&1));
        let fresh = vec![0, 1, 3];
        let counts = room_counts(&batch, &fresh);
        assert_eq!(counts[&("c".into(), "x".into())], 2);
        assert_eq!(counts[&("c".into(), "y".into())], 2);
        // Heads after the upsert: x had 10 before, y was new.
        let heads = HashMap::from([
            (("c".into(), "x".into()), 12),
            (("c".into(), "y".into()), 2),
        ]);
        let assigned = assign_offsets(&batch, &fresh, &counts, &heads).unwrap();
        let out = results(&batch, assigned, &plan, &HashMap::new()).unwrap();
        assert_eq!(out[0].offsets, vec![("x".into(), 11), ("y".into(), 1)]);
        assert_eq!(out[1].offsets, vec![("y".into(), 2)]);
        assert!(out[2].duplicate && out[2].id == "b" && out[2].offsets == out[1].offsets);
        assert_eq!(out[3].offsets, vec![("x".into(), 12)]);
    }
}
