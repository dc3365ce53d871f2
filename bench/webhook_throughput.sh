#!/usr/bin/env bash
# Webhook delivery throughput: N durable events (batches of 500 over HTTP)
# to one endpoint whose receiver (a keep-alive Node http server) answers 204;
# prints the publish time and the time until the admin API counts every
# delivery. Bounded: N events, one receiver, loopback only.
#
#   bench/webhook_throughput.sh                        # SQLite, 5000 events
#   DB=postgres://postgres@127.0.0.1:5432/somedb N=5000 bench/webhook_throughput.sh
#
# Needs node, curl, python3 and a built binary (SWITCHYARD_BIN, default
# target/release/switchyard). A SQLite database is made in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
BIN=${SWITCHYARD_BIN:-target/release/switchyard}
TMP=$(mktemp -d)
DB=${DB:-sqlite://$TMP/sy.db}
RPORT=${RPORT:-3398}
PORT=${PORT:-3399}
node -e "require('http').createServer((q, s) => { q.resume(); q.on('end', () => { s.statusCode = 204; s.end(); }); }).listen($RPORT, '127.0.0.1')" &
RECV=$!
DATABASE_URL=$DB PORT=$PORT HOST=127.0.0.1 API_KEYS=k1 ADMIN_API_KEYS=a1 WEBHOOK_ALLOW_PRIVATE=on \
  WS_PRESENCE=off RUST_LOG=warn "$BIN" serve >"$TMP/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV $RECV 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do curl -sf "localhost:$PORT/health/live" >/dev/null && break; sleep 0.1; done
ID=$(curl -s -X POST "localhost:$PORT/api/v1/admin/webhooks" -H 'Authorization: Bearer a1' -H 'content-type: application/json' \
  -d "{\"companyId\":\"acme\",\"url\":\"http://127.0.0.1:$RPORT/h\",\"types\":[\"order:status_changed\"]}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
BATCH=$(python3 -c "
import json
print(json.dumps([{'type': 'order:status_changed', 'companyId': 'acme', 'payload': {'orderId': str(i), 'oldStatus': 'a', 'newStatus': 'b', 'timestamp': '2026-11-22T10:00:00Z'}} for i in range(500)]))")
start=$(date +%s.%N)
for _ in $(seq 1 $((N / 500))); do
  curl -s -o /dev/null -X POST "localhost:$PORT/api/v1/events" -H 'Authorization: Bearer k1' -H 'content-type: application/json' -d "$BATCH"
done
published=$(date +%s.%N)
while true; do
  D=$(curl -s -H 'Authorization: Bearer a1' "localhost:$PORT/api/v1/admin/webhooks/$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["delivered"])')
  [[ "$D" -ge $((N / 500 * 500)) ]] && break
  sleep 0.05
done
end=$(date +%s.%N)
curl -s "localhost:$PORT/metrics" | grep '^switchyard_webhook_attempts_total'
python3 -c "n=$((N / 500 * 500)); print(f'{n} events: published in {$published-$start:.2f} s; all delivered {$end-$start:.2f} s after the first publish ({n/($end-$start):.0f} deliveries/s)')"
