#!/usr/bin/env bash
# Switchyard benchmarks, side by side with the Node socket.io reference server.
#
#   bench/run.sh                 every point, both servers, A B A B, then a table
#   bench/run.sh fanout connect  only those points
#   bench/run.sh --smoke         each scenario for ~1 s against Switchyard only;
#                                exits non-zero on a protocol failure (< 30 s
#                                once built; SWITCHYARD_BIN=target/debug/switchyard
#                                reuses a debug build instead of building release)
#
# The server under test is pinned to core SERVER_CPU (0) and the load
# generator to LOADGEN_CPU (1) with taskset. Each measured run starts a fresh
# server and stops it afterwards, so no run inherits another's memory or
# connections. Only processes this script started are stopped (their PIDs
# are tracked; an EXIT trap stops whatever is still running). Everything
# targets 127.0.0.0/8. Parameters are environment variables (defaults below).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench

SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
RUNS=${RUNS:-2}
PORT_OURS=${PORT_OURS:-3101}
PORT_REF=${PORT_REF:-3102}
PORT_FLOOR=${PORT_FLOOR:-3103}
FLOOR_BIN=${FLOOR_BIN:-$BENCH/floor/target/release/floor}
# A SWITCHYARD_BIN given by the caller (e.g. target/debug/switchyard from the
# test script's build) is used as is; otherwise the release build is made.
SWITCHYARD_BIN_GIVEN=${SWITCHYARD_BIN:+1}
SWITCHYARD_BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
LOADGEN_BIN=${LOADGEN_BIN:-$BENCH/loadgen/target/release/loadgen}
# PG_ADMIN_URL is used only to (re)create the benchmark database PG_URL.
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/switchyard_bench}
export JWT_SECRET=${JWT_SECRET:-switchyard-bench-secret-0123456789}
export BENCH_API_KEY=${BENCH_API_KEY:-switchyard-bench-key}
# Bound on any one load generator invocation, seconds.
LOADGEN_TIMEOUT=${LOADGEN_TIMEOUT:-300}

# Sized for a 2-core machine; the whole default run takes about 6-8 minutes.
# 19,500, not 20,000: this machine's hard RLIMIT_NOFILE is 20,000 per process
# and cannot be raised, and the server needs a few descriptors of its own.
CONNECT_N=${CONNECT_N:-19500}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-256}
CONNECT_HOLD=${CONNECT_HOLD:-5}
ACK_CONNS=${ACK_CONNS:-1000}
ACK_SECS=${ACK_SECS:-10}
ACK_INTERVAL_MS=${ACK_INTERVAL_MS:-100}   # ack-paced: 1,000 connections x 10/s = 10,000 pings/s
FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANOUT_PUBS=${FANOUT_PUBS:-10}
FANOUT_SECS=${FANOUT_SECS:-10}
FANOUT_WINDOW=${FANOUT_WINDOW:-4}
FANOUT_PACED_RATE=${FANOUT_PACED_RATE:-5}   # fanout-paced: 10 x 5 publishes/s x 1,009 = 50,450 deliveries/s
DURABLE_PUBS=${DURABLE_PUBS:-10}
DURABLE_SECS=${DURABLE_SECS:-10}
DURABLE_WINDOW=${DURABLE_WINDOW:-4}
DURABLE_POINT_RATE=${DURABLE_POINT_RATE:-200}   # per publisher: 10 x 200 = 2,000 events/s
HTTP_BATCH=${HTTP_BATCH:-50}
DOC_WRITERS=${DOC_WRITERS:-10}
DOC_SECS=${DOC_SECS:-5}
DOC_SPREAD_WRITERS=${DOC_SPREAD_WRITERS:-1000}   # documents-spread: writer i edits document i % 1,000
DOC_SPREAD_DOCS=${DOC_SPREAD_DOCS:-1000}
REPLAY_CLIENTS=${REPLAY_CLIENTS:-5000}
REPLAY_EVENTS=${REPLAY_EVENTS:-100}
# connect-presence and storm: one company, presence ON (the default).
PRESENCE_N=${PRESENCE_N:-10000}
STORM_N=${STORM_N:-10000}

ALL_POINTS="connect connect-presence storm ack ack-paced fanout fanout-paced durable-socket durable-rooms durable-http durable-2k documents documents-spread replay"
SMOKE=0
POINTS=()
for arg in "$@"; do
  case $arg in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) POINTS+=("$arg") ;;
  esac
done
if [ ${#POINTS[@]} -eq 0 ]; then read -r -a POINTS <<<"$ALL_POINTS"; fi

SUFFIX=""
if [ $SMOKE = 1 ]; then SUFFIX=-smoke; fi
OUT=${BENCH_OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)$SUFFIX}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- processes we start, and only those -------------------------------------
STARTED=()
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $pid did not stop within 15 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_health() {  # port pid
  for _ in $(seq 1 150); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if curl -fsS -m 1 "http://127.0.0.1:$1/health/websocket" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Starts Switchyard pinned to SERVER_CPU; sets SERVER_PID. $1 = sqlite|postgres.
start_ours() {
  local dir db
  dir=$(mktemp -d "$OUT/ours.XXXXXX")
  if [ "$1" = postgres ]; then db=$PG_URL; fresh_pg || log "could not recreate $PG_URL: this run inherits the previous one's rows"; else db="sqlite://$dir/bench.db"; fi
  # Defaults everywhere except: where to listen and store, the secret and
  # API key the load generator uses, and two policies (not performance
  # knobs) lifted: the per-socket rate limit, so publishers may exceed 20
  # events/s, and the per-IP count of connections not yet authenticated,
  # since the load generator opens CONNECT_CONCURRENCY at once from one address.
  # Presence: on (the default) for connect-presence, storm and the
  # Postgres points; off for the SQLite points that compare with the
  # reference, which has none (BENCH_PRESENCE overrides).
  # Run from an empty directory so no .env is read.
  (cd "$dir" && exec env HOST=127.0.0.1 PORT="$PORT_OURS" DATABASE_URL="$db" \
      JWT_SECRET="$JWT_SECRET" API_KEYS="$BENCH_API_KEY" \
      WS_RATE_LIMIT=1000000 WS_RATE_BURST=1000000 WS_MAX_PENDING_PER_IP=1000000 \
      WS_PRESENCE="${BENCH_PRESENCE:-$POINT_PRESENCE}" \
      taskset -c "$SERVER_CPU" "$SWITCHYARD_BIN" serve) >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  SERVER_PORT=$PORT_OURS
  SERVER_LABEL=switchyard
  SERVER_DB=$1
  wait_health "$PORT_OURS" "$SERVER_PID" || { log "switchyard did not become healthy:"; tail -20 "$dir/server.log" >&2; return 1; }
}

# Starts a server other than Switchyard pinned to SERVER_CPU; sets SERVER_PID.
start_other() {  # label port workdir command...
  local label=$1 port=$2 workdir=$3 dir
  shift 3
  dir=$(mktemp -d "$OUT/$label.XXXXXX")
  (cd "$workdir" && exec env PORT="$port" JWT_SECRET="$JWT_SECRET" \
      taskset -c "$SERVER_CPU" "$@") >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  SERVER_PORT=$port
  SERVER_LABEL=$label
  SERVER_DB=none
  wait_health "$port" "$SERVER_PID" || { log "$label did not become healthy:"; tail -20 "$dir/server.log" >&2; return 1; }
}

# The Node reference; the socketioxide floor (bench/floor).
start_ref() { start_other reference "$PORT_REF" "$BENCH/reference" node server.js; }
start_floor() { start_other floor "$PORT_FLOOR" "$OUT" "$FLOOR_BIN"; }

stop_server() {
  stop_pid "$SERVER_PID"
  local keep=() pid
  for pid in "${STARTED[@]}"; do
    if [ "$pid" != "$SERVER_PID" ]; then keep+=("$pid"); fi
  done
  STARTED=("${keep[@]+"${keep[@]}"}")
}

# Runs the load generator pinned to LOADGEN_CPU against the current server;
# appends {point, run, db, result} to RESULTS; returns the generator's code.
LG() {  # point run loadgen-args...
  local point=$1 run=$2; shift 2
  local line rc=0
  line=$(timeout "$LOADGEN_TIMEOUT" taskset -c "$LOADGEN_CPU" "$LOADGEN_BIN" \
      --url "http://127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" --label "$SERVER_LABEL" \
      "$@") || rc=$?
  [ -n "$line" ] || line="{\"server\":\"$SERVER_LABEL\",\"status\":\"failed\",\"results\":{\"reason\":\"load generator printed nothing (exit $rc: usage error, timeout or crash; see the log)\"}}"
  # The 1-minute load average when the run ended: figures from a loaded
  # machine are not claimed.
  printf '{"point":"%s","run":%d,"db":"%s","exit":%d,"loadavg":"%s","result":%s}\n' \
    "$point" "$run" "$SERVER_DB" "$rc" "$(cut -d' ' -f1-3 /proc/loadavg)" "$line" >>"$RESULTS"
  log "$point run $run $SERVER_LABEL: exit $rc: $(printf '%s' "$line" | cut -c1-220)"
  return "$rc"
}

# ---- builds -------------------------------------------------------------------
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  if [ -z "$SWITCHYARD_BIN_GIVEN" ]; then
    log "building switchyard (release)"
    (cd "$ROOT" && cargo build --release -q)
  fi
  log "building the load generator (release)"
  (cd "$BENCH/loadgen" && cargo build --release -q)
  case " ${BENCH_SERVERS:-ours ref} " in
    *" floor "*) log "building the socketioxide floor (release)"; (cd "$BENCH/floor" && cargo build --release -q) ;;
  esac
fi
# Installed even with BENCH_SKIP_BUILD: a binary can be reused, the
# reference's packages still have to be there.
if [ $SMOKE = 0 ] && [ ! -d "$BENCH/reference/node_modules" ]; then
  (cd "$BENCH/reference" && npm ci --no-audit --no-fund --loglevel=error)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A fresh database per Switchyard run, as each SQLite run gets a fresh
# file: no run inherits another's rows or work. The previous run's server,
# stopped, leaves its users online for the next node's sweep to settle (as a
# cluster does when a node stops), and that settling ran inside the next
# run's measurement: PostgreSQL used twice the CPU in every second run of
# connect-presence (bench/README.md, 2026-12-04 06:07 pass).
PG_OK=0
PG_FRESH=1
fresh_pg() {
  [ $PG_FRESH = 1 ] || return 0
  local db=${PG_URL##*/}
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -c "CREATE DATABASE \"$db\"" >/dev/null 2>&1
}
# Host and port of PG_URL (postgres://user@host:port/db; port 5432 if none).
PG_HOSTPORT=${PG_URL#*://}; PG_HOSTPORT=${PG_HOSTPORT#*@}; PG_HOSTPORT=${PG_HOSTPORT%%/*}
PG_HOST=${PG_HOSTPORT%:*}
PG_PORT=5432
[ "$PG_HOST" = "$PG_HOSTPORT" ] || PG_PORT=${PG_HOSTPORT##*:}
if reachable "$PG_HOST" "$PG_PORT"; then
  if fresh_pg; then
    PG_OK=1
  else
    log "cannot create $PG_URL; using $PG_ADMIN_URL itself"
    PG_URL=$PG_ADMIN_URL
    PG_FRESH=0
    PG_OK=1
  fi
fi

# ---- smoke ------------------------------------------------------------------
if [ $SMOKE = 1 ]; then
  db=sqlite
  if [ $PG_OK = 1 ]; then db=postgres; fi
  POINT_PRESENCE=on
  start_ours "$db"
  log "smoke against switchyard ($db), pid $SERVER_PID"
  failed=0
  smoke() {
    local rc=0
    LG "$1" 1 --strict "${@:2}" >/dev/null || rc=$?
    case $rc in
      0) echo "smoke: ok          $1" ;;
      3) if [ "${SMOKE_STRICT:-0}" = 1 ]; then echo "smoke: FAILED      $1 (unsupported by server)"; failed=1
         else echo "smoke: unsupported $1 (server lacks the feature; SMOKE_STRICT=1 makes this fail)"; fi ;;
      *) echo "smoke: FAILED      $1 (exit $rc; see $RESULTS)"; failed=1 ;;
    esac
  }
  smoke connect connect --connections 20 --hold 0.5
  smoke storm storm --connections 20 --settle 0.3 --after 0.3
  smoke ack ack-latency --connections 5 --duration 1 --warmup 0.2
  smoke fanout fanout --subscribers 10 --publishers 2 --duration 1 --drain 2
  smoke durable-socket durable --via socket --publishers 2 --duration 1 --drain 2
  smoke durable-rooms durable --via socket --publishers 2 --rooms 2 --duration 1 --drain 2
  smoke durable-http durable --via http --publishers 2 --batch 10 --duration 1 --drain 2
  smoke documents documents --writers 3 --duration 1
  smoke replay replay --clients 10 --events 5 --deadline 5
  stop_server
  if [ $failed = 0 ]; then echo "smoke: passed ($RESULTS)"; else echo "smoke: FAILED ($RESULTS)"; fi
  exit $failed
fi

# ---- full run ---------------------------------------------------------------
log "results go to $RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "ram: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "node: $(node --version)"
} >"$OUT/machine.txt"

# point → database, and which servers run it.
point_db() { case $1 in connect|ack|ack-paced|fanout|fanout-paced) echo sqlite ;; *) echo postgres ;; esac; }
point_presence() { case $1 in connect|ack|ack-paced|fanout|fanout-paced) echo off ;; *) echo on ;; esac; }
# `floor` (bench/floor: socketioxide with nothing on top) only where it
# bounds ours: connecting and idle connections. It runs only when asked
# for (BENCH_SERVERS="ours ref floor").
point_servers() { case $1 in durable-http|documents|documents-spread|replay) echo "ours" ;; connect) echo "ours ref floor" ;; *) echo "ours ref" ;; esac; }
point_args() {
  case $1 in
    connect) echo "connect --connections $CONNECT_N --concurrency $CONNECT_CONCURRENCY --hold $CONNECT_HOLD" ;;
    connect-presence) echo "connect --connections $PRESENCE_N --concurrency $CONNECT_CONCURRENCY --hold $CONNECT_HOLD" ;;
    storm) echo "storm --connections $STORM_N --concurrency $CONNECT_CONCURRENCY --settle 3 --after 3" ;;
    ack) echo "ack-latency --connections $ACK_CONNS --duration $ACK_SECS --warmup 2" ;;
    ack-paced) echo "ack-latency --connections $ACK_CONNS --duration $ACK_SECS --warmup 2 --interval-ms $ACK_INTERVAL_MS" ;;
    fanout) echo "fanout --subscribers $FANOUT_SUBS --publishers $FANOUT_PUBS --duration $FANOUT_SECS --window $FANOUT_WINDOW" ;;
    fanout-paced) echo "fanout --subscribers $FANOUT_SUBS --publishers $FANOUT_PUBS --duration $FANOUT_SECS --rate $FANOUT_PACED_RATE" ;;
    durable-socket) echo "durable --via socket --publishers $DURABLE_PUBS --duration $DURABLE_SECS --window $DURABLE_WINDOW" ;;
    durable-rooms) echo "durable --via socket --publishers $DURABLE_PUBS --rooms $DURABLE_PUBS --duration $DURABLE_SECS --window $DURABLE_WINDOW" ;;
    durable-http) echo "durable --via http --publishers $DURABLE_PUBS --batch $HTTP_BATCH --duration $DURABLE_SECS" ;;
    durable-2k) echo "durable --via socket --publishers $DURABLE_PUBS --rate $DURABLE_POINT_RATE --duration $DURABLE_SECS" ;;
    documents) echo "documents --writers $DOC_WRITERS --duration $DOC_SECS" ;;
    documents-spread) echo "documents --writers $DOC_SPREAD_WRITERS --documents $DOC_SPREAD_DOCS --duration $DOC_SECS" ;;
    replay) echo "replay --clients $REPLAY_CLIENTS --events $REPLAY_EVENTS --deadline 10" ;;
    *) return 1 ;;
  esac
}

for point in "${POINTS[@]}"; do
  args=$(point_args "$point") || { log "unknown point $point (known: $ALL_POINTS)"; exit 2; }
  db=$(point_db "$point")
  POINT_PRESENCE=$(point_presence "$point")
  if [ "$db" = postgres ] && [ $PG_OK = 0 ]; then
    log "skipping $point: PostgreSQL is not reachable on $PG_HOST:$PG_PORT"
    continue
  fi
  for run in $(seq 1 "$RUNS"); do
    for server in $(point_servers "$point"); do
      # BENCH_SERVERS=ours: skip the reference (e.g. a pass of an older build).
      case " ${BENCH_SERVERS:-ours ref} " in *" $server "*) ;; *) continue ;; esac
      case $server in ours) start_ours "$db" ;; ref) start_ref ;; floor) start_floor ;; esac
      # shellcheck disable=SC2086 # args is a word list on purpose
      LG "$point" "$run" $args || true
      stop_server
      sleep 1
    done
  done
done

python3 "$BENCH/summarize.py" "$RESULTS" "$OUT/machine.txt" | tee "$OUT/table.md"
