#!/usr/bin/env bash
# Runs every test suite: Rust (unit + integration, on SQLite and Postgres),
# the Node suite with the real socket.io-client (including the deploy/ assets
# checked against a live node and a two-node cluster behind nginx), the
# python-socketio suite, a schemathesis fuzz of the HTTP API from its OpenAPI document, the TypeScript SDK / React hooks (unit, type and
# bundle-size checks), and the browser tests (Debian chromium + playwright-core, installed with apt-get
# when missing) of the hooks, the SDK and the example dashboard.
#
# Needs PostgreSQL (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test)
# and Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379). If either is not
# reachable it is started when installed locally; otherwise this fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

ensure_postgres() {
  reachable 127.0.0.1 5432 && return 0
  echo "test.sh: PostgreSQL is not reachable on 127.0.0.1:5432; trying to start it" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 20); do reachable 127.0.0.1 5432 && return 0; sleep 0.5; done
  echo "test.sh: FAILED: PostgreSQL is required. Install and start it (Debian: apt-get install postgresql;" >&2
  echo "  pg_ctlcluster <version> main start) with trust auth for user postgres and a database 'test'," >&2
  echo "  or point TEST_DATABASE_URL at one." >&2
  exit 1
}

ensure_redis() {
  reachable 127.0.0.1 6379 && return 0
  echo "test.sh: Redis is not reachable on 127.0.0.1:6379; trying to start it" >&2
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
  fi
  for _ in $(seq 1 20); do reachable 127.0.0.1 6379 && return 0; sleep 0.5; done
  echo "test.sh: FAILED: Redis is required. Install and start it (Debian: apt-get install redis-server;" >&2
  echo "  redis-server --daemonize yes) or point TEST_REDIS_URL at one." >&2
  exit 1
}

# Debian packages the suites need: nginx (the load-balancer suite runs
# deploy/nginx/switchyard.conf for real) and promtool (from prometheus, to
# check deploy/prometheus/alerts.yml).
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && return 0
  apt-get update -qq >/dev/null 2>&1 \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

ensure_nginx() {
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then return 0; fi
  echo "test.sh: installing nginx (Debian package) for the load-balancer suite" >&2
  if ! apt_install nginx; then
    echo "test.sh: FAILED: nginx is required by clients/tests/test/loadbalancer.test.js and could not be" >&2
    echo "  installed with apt-get. Install it (apt-get install nginx) and run again." >&2
    exit 1
  fi
}

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  echo "test.sh: installing prometheus (Debian package) for promtool" >&2
  if ! apt_install prometheus; then
    echo "" >&2
    echo "test.sh: ******************************************************************" >&2
    echo "test.sh: WARNING: promtool could not be installed (apt-get install prometheus failed)." >&2
    echo "test.sh: deploy/prometheus/alerts.yml gets a STRUCTURE CHECK ONLY, not promtool." >&2
    echo "test.sh: ******************************************************************" >&2
    export SY_NO_PROMTOOL=1
  fi
}

ensure_postgres
ensure_redis
ensure_nginx
ensure_promtool

echo "== cargo build"
cargo build

# Tests that need a Postgres database of their own create `sy_*` databases
# on the shared server; the previous run's leftovers are dropped here, when
# no suite is running.
drop_test_databases() {
  command -v psql >/dev/null 2>&1 || { echo "test.sh: psql not found; leftover sy_* test databases are kept" >&2; return 0; }
  local admin="${TEST_DATABASE_URL%/*}/postgres" dbs db
  if ! dbs=$(psql "$admin" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'sy\_%'" 2>&1); then
    echo "test.sh: could not list leftover sy_* test databases (kept): $dbs" >&2
    return 0
  fi
  for db in $dbs; do
    psql "$admin" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
      || echo "test.sh: could not drop leftover test database $db (kept)" >&2
  done
}
drop_test_databases

failed=()
timings=()
# Each suite has a time limit (minutes), so a hung suite fails loudly with
# its name instead of eating CI's budget; `timeout` kills the suite's whole
# process group (servers it started included).
run_suite() {
  local name=$1 minutes=$2; shift 2
  echo "== $name (limit ${minutes} min)"
  local start=$SECONDS rc=0
  timeout --kill-after=30 "${minutes}m" bash -c '"$@"' _ "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "test.sh: FAILED: suite '$name' did not finish within ${minutes} min and was stopped" >&2
    failed+=("$name (timed out)")
  elif [ "$rc" -ne 0 ]; then
    failed+=("$name")
  fi
  timings+=("$((SECONDS - start)) s  $name")
}

rust_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast
  else
    cargo test --no-fail-fast
  fi
}
node_tests() { (cd clients/tests && npm ci --no-audit --no-fund --loglevel=error && npm test); }
js_clients() {
  (cd clients && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm run test:unit \
    && npm run test:types && npm run size)
}
browser_tests() { SWITCHYARD_BIN="$PWD/target/debug/switchyard" bash clients/e2e/run.sh; }
export -f rust_tests node_tests js_clients browser_tests

run_suite "Rust tests (unit + integration, SQLite and Postgres)" 15 rust_tests
run_suite "Node suite (socket.io-client)" 20 node_tests
run_suite "Python suite (python-socketio)" 5 bash tests/python/run.sh
# Bounded (SY_FUZZ_MAX_EXAMPLES per operation, about a minute).
run_suite "OpenAPI fuzz (schemathesis, from /api/v1/openapi.json)" 8 env SWITCHYARD_BIN="$PWD/target/debug/switchyard" bash tests/python/openapi/fuzz.sh
run_suite "JS clients (build, vitest unit tests, tsc type test, bundle-size budget)" 10 js_clients
run_suite "Browser tests (chromium: hooks, SDK, dashboard end to end)" 15 browser_tests
# Keeps the benchmark harness working (a few connections per scenario, no timing claims).
run_suite "Benchmark smoke (bench/run.sh --smoke)" 5 env SWITCHYARD_BIN="$PWD/target/debug/switchyard" SMOKE_STRICT=1 bench/run.sh --smoke

echo "== suite times"
printf '  %s\n' "${timings[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED suites: ${failed[*]}" >&2
  exit 1
fi
echo "test.sh: all suites passed"
