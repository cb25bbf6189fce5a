#!/usr/bin/env bash
# The test command (README: `npm test`). From a clean clone on a fresh Debian 12 machine it installs
# the Debian packages, the npm dependencies and the test services, runs every test, and stops the
# services it started (by PID) whatever the outcome.
#
#   npm test                 # everything: unit tests beside the code and real-component tests in test/
#   npm test -- FILE...      # only these test files (services are still started)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# `npm install`, not `npm ci`: the lock file holds only this platform's optional binaries (Biome's
# other-platform packages are not on the registry mirror here), which `npm ci` refuses as out of sync.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi

# Test services: each scripts/services/NAME.sh has `start STATE_DIR` (writes STATE_DIR/NAME.env with
# the variables tests read) and `stop STATE_DIR`.
export LIFEBOAT_TEST_STATE="${LIFEBOAT_TEST_STATE:-$(mktemp -d /tmp/lifeboat-test.XXXXXX)}"
chmod 0755 "$LIFEBOAT_TEST_STATE"
services=()
stop_services() {
  for s in "${services[@]}"; do bash "scripts/services/$s.sh" stop "$LIFEBOAT_TEST_STATE" || true; done
}
trap stop_services EXIT
for f in scripts/services/*.sh; do
  [ -e "$f" ] || continue
  s=$(basename "$f" .sh)
  echo "test: starting service $s"
  bash "$f" start "$LIFEBOAT_TEST_STATE"
  services+=("$s")
  set -a
  # shellcheck disable=SC1090
  [ -f "$LIFEBOAT_TEST_STATE/$s.env" ] && . "$LIFEBOAT_TEST_STATE/$s.env"
  set +a
done

npx biome check .
npx tsc -p tsconfig.json --noEmit

if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find src test -name '*.test.ts' | sort)
fi
# One file at a time per core: real-component tests start VMs and servers of their own.
node --import tsx --test --test-concurrency=2 --test-timeout=900000 "${files[@]}"
