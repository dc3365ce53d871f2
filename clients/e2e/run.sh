#!/usr/bin/env bash
# Browser tests: Debian's chromium (installed with apt-get when missing — never
# a browser download) driven by playwright-core against the real switchyard
# binary. Expects `npm ci` and `npm run build` done in clients/ (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "e2e: /usr/bin/chromium is missing; installing Debian's chromium with apt-get" >&2
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >&2; then
    echo "e2e: FAILED to install chromium (apt-get install -y chromium). The browser tests need /usr/bin/chromium;" >&2
    echo "     install it (Debian: apt-get install chromium) or set CHROMIUM_PATH. No browser is downloaded." >&2
    exit 1
  fi
fi
"${CHROMIUM_PATH:-/usr/bin/chromium}" --version >&2 || { echo "e2e: FAILED: chromium does not start" >&2; exit 1; }

npm run test:browser
