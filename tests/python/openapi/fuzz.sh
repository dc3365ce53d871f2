#!/usr/bin/env bash
# Fuzzes the HTTP API of a live node from its served OpenAPI document with
# schemathesis: no 5xx, every status documented, every body (4xx included:
# the `{ error: { code, message } }` body) matching its schema, content types
# as documented. Bounded by SY_FUZZ_MAX_EXAMPLES per operation (default 40).
# Uses $SWITCHYARD_BIN or <repo>/target/debug/switchyard, and the venv
# tests/python/run.sh creates (<repo>/target/pyvenv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="$repo/target/pyvenv"
bin="${SWITCHYARD_BIN:-$repo/target/debug/switchyard}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$repo/tests/python/requirements.txt"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export SY_FUZZ_API_KEY="fuzz-publish-key-0123456789"
export SY_FUZZ_ADMIN_KEY="fuzz-admin-key-0123456789"
# exec: $! is then the server itself, so cleanup stops it (not just a subshell).
(cd "$work" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT="$port" \
  DATABASE_URL="sqlite://$work/fuzz.db" JWT_SECRET="fuzz-secret-0123456789abcdef" \
  API_KEYS="$SY_FUZZ_API_KEY" ADMIN_API_KEYS="$SY_FUZZ_ADMIN_KEY" \
  API_KEY_FAILURE_LIMIT=1000000 RUST_LOG=warn NO_COLOR=1 \
  "$bin" serve >"$work/server.log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done

# schemathesis keeps a cache (.schemathesis/) in its working directory: the temp dir.
cd "$work"
status=0
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run \
  "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${SY_FUZZ_MAX_EXAMPLES:-40}" \
  --seed "${SY_FUZZ_SEED:-1}" \
  --request-timeout 10 \
  --no-color \
  --report junit --report-dir "$work/report" || status=$?
report="$(ls "$work"/report/junit*.xml 2>/dev/null | head -1)"
if [ -n "$report" ]; then
  "$venv/bin/python" - "$report" <<'PY' || true
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = sum(int(s.get("tests", 0)) for s in suites)
failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(f"openapi fuzz: {tests} operations, {failures} failing")
PY
fi
if [ $status -ne 0 ]; then
  echo "--- server log (tail) ---" >&2
  tail -50 "$work/server.log" >&2
fi
exit $status
