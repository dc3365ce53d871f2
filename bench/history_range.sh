#!/usr/bin/env bash
# History by time range over 10 million events on PostgreSQL (issue 15 item 4).
#
# Loads a bounded synthetic log with generate_series (N events, default
# 10,000,000, over DAYS days, ROOMS rooms, TYPES types; one company holds
# 90 %, a second one the rest), then times one-day range queries through the
# real HTTP API (`GET /api/v1/events?from=&to=`, curl's time_total, REPEAT
# runs each) and prints the plan of the main query (EXPLAIN ANALYZE).
#
#   bench/history_range.sh                 # load (once) and measure
#   SKIP_LOAD=1 bench/history_range.sh     # measure again on the loaded database
#   N=1000000 bench/history_range.sh       # a smaller log
#
# Needs psql, curl, python3, PostgreSQL on 127.0.0.1:5432 (trust auth) and a
# built binary (SWITCHYARD_BIN, default target/release/switchyard, else debug).
# Drops and recreates the database $DB (default sy_bench_history); `DROP=1`
# drops it at the end (it takes about 6 GB at 10 M events).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000000}
DAYS=${DAYS:-30}
ROOMS=${ROOMS:-200}
TYPES=${TYPES:-20}
REPEAT=${REPEAT:-5}
DB=${DB:-sy_bench_history}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-3391}
BIN=${SWITCHYARD_BIN:-}
if [[ -z "$BIN" ]]; then
  if [[ -x target/release/switchyard ]]; then BIN=target/release/switchyard; else BIN=target/debug/switchyard; fi
fi
# Day 0 starts at 2026-01-01T00:00:00Z.
T0=1767225600000
DAY=86400000
psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$PGURL/$DB" "$@"; }

if [[ -z "${SKIP_LOAD:-}" ]]; then
  psql -X -q -v ON_ERROR_STOP=1 "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  DATABASE_URL="$PGURL/$DB" "$BIN" migrate >/dev/null
  echo "loading $N events over $DAYS days, $ROOMS rooms, $TYPES types..." >&2
  start=$(date +%s)
  # Secondary indexes are built after the load (much faster than row by
  # row); their definitions are those of migrations/postgres.
  psql_db <<SQL
DROP INDEX event_rooms_expiry, event_rooms_event, event_rooms_time, events_time, events_type_time;
INSERT INTO events (id, company_id, type, payload, priority, source, publisher, created_at, expires_at)
SELECT lpad(g::text, 12, '0'),
       CASE WHEN g % 10 = 0 THEN 'other' ELSE 'acme' END,
       'type_' || (g % $TYPES),
       jsonb_build_object('seq', g, 'value', g % 1000),
       CASE WHEN g % 50 = 0 THEN 'critical' ELSE 'medium' END,
       'bench', NULL,
       $T0 + (g::bigint * $DAYS * $DAY) / $N,
       $T0 + (g::bigint * $DAYS * $DAY) / $N + 400::bigint * $DAY
FROM generate_series(0, $N - 1) AS g;
INSERT INTO event_rooms (company_id, room, "offset", event_id, expires_at, created_at)
SELECT CASE WHEN g % 10 = 0 THEN 'other' ELSE 'acme' END,
       'line:' || (g % $ROOMS),
       g / $ROOMS + 1,
       lpad(g::text, 12, '0'),
       $T0 + (g::bigint * $DAYS * $DAY) / $N + 400::bigint * $DAY,
       $T0 + (g::bigint * $DAYS * $DAY) / $N
FROM generate_series(0, $N - 1) AS g;
CREATE INDEX event_rooms_expiry ON event_rooms (expires_at);
CREATE INDEX event_rooms_event ON event_rooms (event_id);
CREATE INDEX event_rooms_time ON event_rooms (company_id, room, created_at, event_id);
CREATE INDEX events_time ON events (company_id, created_at, id);
CREATE INDEX events_type_time ON events (company_id, type, created_at, id);
VACUUM ANALYZE events;
VACUUM ANALYZE event_rooms;
SQL
  echo "loaded in $(( $(date +%s) - start )) s" >&2
fi

psql_db -At -c "SELECT 'events: ' || count(*) FROM events" \
  -c "SELECT 'database size: ' || pg_size_pretty(pg_database_size('$DB'))"

DATABASE_URL="$PGURL/$DB" HOST=127.0.0.1 PORT=$PORT API_KEYS=bench-key \
  WS_PRESENCE=off RUST_LOG=warn "$BIN" serve >/tmp/sy-bench-history.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.1; done

FROM=$(( T0 + 15 * DAY ))
TO=$(( FROM + DAY ))
BASE="http://127.0.0.1:$PORT/api/v1/events?companyId=acme&from=$FROM&to=$TO"

# time_total of one request, seconds; the body goes to $2 (or nowhere).
timed() {
  curl -s -o "${2:-/dev/null}" -w '%{time_total}' -H 'authorization: Bearer bench-key' ${3:+-H "$3"} "$1"
}
measure() { # name url [accept]
  local times=() t
  for _ in $(seq 1 "$REPEAT"); do times+=("$(timed "$2" /tmp/sy-bench-page.json "${3:-}")"); done
  python3 - "$1" "${times[@]}" <<'PY'
import sys, statistics
name, ts = sys.argv[1], sorted(float(t) for t in sys.argv[2:])
print(f"| {name} | {statistics.median(ts)*1000:.1f} | {ts[-1]*1000:.1f} |")
PY
}

echo
echo "| one-day range (day 15 of $DAYS, company acme), via HTTP | median ms | max ms |"
echo "| --- | --- | --- |"
measure "first page, limit=100" "$BASE&limit=100"
measure "first page, limit=1000" "$BASE&limit=1000"
CURSOR=$(curl -s -H 'authorization: Bearer bench-key' "http://127.0.0.1:$PORT/api/v1/events?companyId=acme&from=$(( FROM + DAY / 2 ))&to=$TO&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
measure "a page mid-day (cursor), limit=100" "$BASE&limit=100&cursor=$CURSOR"
measure "types=type_3,type_7, limit=100" "$BASE&limit=100&types=type_3,type_7"
measure "room=line:42, limit=100" "$BASE&limit=100&room=line:42"
measure "room=line:42 + types=type_2, limit=100" "$BASE&limit=100&room=line:42&types=type_2"
measure "NDJSON export of room line:42's day" "$BASE&room=line:42" "accept: application/x-ndjson"
echo
echo "NDJSON lines in that export: $(wc -l < /tmp/sy-bench-page.json)"
start=$(date +%s.%N)
LINES=$(curl -s -H 'authorization: Bearer bench-key' -H 'accept: application/x-ndjson' "$BASE" | wc -l)
echo "NDJSON export of the whole day (all rooms): $LINES events in $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s"
echo "server RSS after the export: $(awk '/VmRSS/ {print $2, $3}' /proc/$SERVER/status)"

echo
echo "plan of the first page (limit 100):"
psql_db -At -c "EXPLAIN (ANALYZE, BUFFERS) SELECT e.id, e.type, e.payload, e.created_at FROM events e
  WHERE e.company_id = 'acme' AND e.created_at >= $FROM AND e.created_at < $TO AND (e.created_at, e.id) > ($FROM, '')
  ORDER BY e.created_at, e.id LIMIT 100" | sed 's/^/    /'
echo "plan of a room's page:"
psql_db -At -c "EXPLAIN (ANALYZE, BUFFERS) SELECT e.id, r.room, r.\"offset\", e.payload, r.created_at FROM event_rooms r JOIN events e ON e.id = r.event_id
  WHERE r.company_id = 'acme' AND r.created_at >= $FROM AND r.created_at < $TO AND (r.created_at, r.event_id) > ($FROM, '') AND r.room = 'line:42'
  ORDER BY r.created_at, r.event_id LIMIT 100" | sed 's/^/    /'

if [[ -n "${DROP:-}" ]]; then
  kill $SERVER 2>/dev/null || true
  psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
fi
