#!/usr/bin/env bash
# The project's test command: `bash tests/run.sh [cargo test args...]`.
# Installs what the integration tests need (Datadog's test agent in .venv, the
# PostgreSQL server binaries in CI), builds the service binaries and the tracing
# library's examples the tests run,
# then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

DDAPM_TEST_AGENT_VERSION=1.69.1

if [ -z "${DDAPM_TEST_AGENT:-}" ] && ! .venv/bin/ddapm-test-agent --version 2>/dev/null | grep -qx "$DDAPM_TEST_AGENT_VERSION"; then
  echo "run.sh: installing ddapm-test-agent $DDAPM_TEST_AGENT_VERSION into .venv" >&2
  [ -x .venv/bin/python3 ] || python3 -m venv .venv
  .venv/bin/python3 -m pip install --quiet --disable-pip-version-check "ddapm-test-agent==$DDAPM_TEST_AGENT_VERSION"
fi

has_pg_server() {
  command -v initdb >/dev/null && command -v postgres >/dev/null && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if [ -z "${TEST_DATABASE_URL:-}" ] && ! has_pg_server; then
  if [ "$(id -u)" = 0 ] && [ "${CI:-}" = true ]; then
    echo "run.sh: installing the PostgreSQL server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "run.sh: no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin." >&2
    echo "run.sh: install them (Debian: sudo apt-get install postgresql) or set TEST_DATABASE_URL." >&2
    exit 1
  fi
fi

# The viewer's browser tests (tests/viewer.rs) drive a real headless Chromium.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && [ "${CI:-}" = true ]; then
    echo "run.sh: installing Chromium (for the viewer's browser tests)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "run.sh: no Chromium on PATH; the viewer's browser tests (tests/viewer.rs) need it." >&2
    echo "run.sh: install it (Debian: sudo apt-get install chromium fonts-dejavu-core)." >&2
    exit 1
  fi
fi

# The tests run the binaries of the profile they are built with.
build_profile=()
for arg in "$@"; do
  if [ "$arg" = --release ]; then build_profile=(--release); fi
  if [ "$arg" = -- ]; then break; fi
done
cargo build --workspace --bins --examples --locked "${build_profile[@]}"

# Run everything, then close with one total over all test binaries (cargo's own last lines are
# the doc-test runs, which here hold no test) and Datadog's conformance suite
# (tests/conformance/run.sh: the parametric app against ../shared/system-tests, expected
# failures from docs/CONFORMANCE.md; CONFORMANCE=0 leaves it out).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
if [ "${CONFORMANCE:-1}" != 0 ]; then
  app=target/debug/parametric
  if [ ${#build_profile[@]} -gt 0 ]; then app=target/release/parametric; fi
  PARAMETRIC_APP=${PARAMETRIC_APP:-$PWD/$app} bash tests/conformance/run.sh 2>&1 | tee -a "$log" || status=$?
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^conformance: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
