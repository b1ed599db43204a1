#!/usr/bin/env bash
# Regenerates the pictures of the docs from a real run, with the shipped helper delays
# (NOTES_HELPER_DELAY_SCALE=1, not the tests' shortened ones):
#   docs/get_notes.png  tracecat --png of GET /notes (tutorial step 3)
#   docs/add_date.png   tracecat --png --scale 2 of POST /notes?add_date=y (step 4)
#   docs/viewer.png     headless Chromium's screenshot of the viewer on that trace, calendar's
#                       server span selected (README, tutorial)
#
# Usage, from anywhere: bash docs/pictures.sh
# Runs the services from the target directory (CARGO_TARGET_DIR or target/; built here with
# `cargo build -p notes -p calendar -p tracecat`), Datadog's test agent (DDAPM_TEST_AGENT or
# .venv/bin/ddapm-test-agent; `bash tests/run.sh` installs it), a private PostgreSQL
# (initdb and pg_ctl on PATH or in /usr/lib/postgresql/*/bin; as user postgres or nobody when
# run as root) and Chromium, all on free loopback ports, and stops them at the end. A missing
# prerequisite stops it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { echo "pictures.sh: $*" >&2; exit 1; }

agent_bin=${DDAPM_TEST_AGENT:-$root/.venv/bin/ddapm-test-agent}
[ -x "$agent_bin" ] || die "no test agent at $agent_bin: run bash tests/run.sh once, or set DDAPM_TEST_AGENT"
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chromium" ] || die "no Chromium on PATH (Debian: apt-get install chromium fonts-dejavu-core)"
command -v curl >/dev/null || die "no curl on PATH"
pg_bin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1 || true)")
[ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] || die "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"

cargo build -q -p notes -p calendar -p tracecat
bin=${CARGO_TARGET_DIR:-$root/target}/debug
for b in notes calendar tracecat; do [ -x "$bin/$b" ] || die "$bin/$b was not built"; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url what
  for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  die "$2 did not answer on $1"
}

work=$(mktemp -d /tmp/pictures.XXXXXX)
pids=()
pg_user=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$work/pg/postmaster.pid" ]; then as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root.
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then pg_user=postgres; else pg_user=nobody; fi
  chown "$pg_user" "$work"
fi
as_pg() { if [ -n "$pg_user" ]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi; }

pg_port=$(free_port)
as_pg "$pg_bin/initdb" -D "$work/pg" -U postgres --auth=trust >"$work/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$work/initdb.log")"
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$work/pg.log")"

agent_port=$(free_port)
"$agent_bin" --port "$agent_port" >"$work/agent.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$agent_port/test/traces" "the test agent"

common=(DD_TRACE_AGENT_URL="http://127.0.0.1:$agent_port" DD_ENV=dev DD_VERSION=0.1.0 HOST=127.0.0.1)
calendar_port=$(free_port)
env "${common[@]}" PORT="$calendar_port" "$bin/calendar" >"$work/calendar.log" 2>&1 &
pids+=($!)
notes_port=$(free_port)
env "${common[@]}" PORT="$notes_port" NOTES_HELPER_DELAY_SCALE=1 \
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres" \
  CALENDAR_URL="http://127.0.0.1:$calendar_port" "$bin/notes" >"$work/notes.log" 2>&1 &
pids+=($!)
viewer_port=$(free_port)
"$bin/tracecat" serve --agent "http://127.0.0.1:$agent_port" --listen "127.0.0.1:$viewer_port" >"$work/viewer.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$calendar_port/calendar" calendar
wait_http "http://127.0.0.1:$notes_port/health" notes
wait_http "http://127.0.0.1:$viewer_port/" "tracecat serve"

notes=http://127.0.0.1:$notes_port
curl -sf -X POST "$notes/notes?desc=hello" >/dev/null
curl -sf -X GET "$notes/notes" >/dev/null
tc=("$bin/tracecat" --agent "http://127.0.0.1:$agent_port")
"${tc[@]}" --last --resource 'GET /notes' --png docs/get_notes.png
curl -sf -X POST "$notes/notes?desc=hello_again&add_date=y" >/dev/null
"${tc[@]}" --last --resource 'POST /notes' --png docs/add_date.png --scale 2

# The viewer on that trace, calendar's server span selected (as the docs describe it).
ids=$(curl -sf "http://127.0.0.1:$agent_port/test/traces" | python3 -c '
import json, sys
traces = json.load(sys.stdin)
best = None
for t in traces:
    root = [s for s in t if s.get("parent_id", 0) == 0 and s.get("resource") == "POST /notes"]
    cal = [s for s in t if s["service"] == "calendar" and s["name"] == "actix_web.request"]
    if root and cal and (best is None or root[0]["start"] > best[0]):
        best = (root[0]["start"], root[0]["trace_id"], cal[0]["span_id"])
if best is None:
    sys.exit("no POST /notes trace with a calendar span")
print(best[1], best[2])
')
read -r trace_id calendar_span <<<"$ids"
"$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --no-default-browser-check --disable-background-networking --disable-component-update \
  --disable-sync --hide-scrollbars --user-data-dir="$work/chromium" \
  --screenshot="$root/docs/viewer.png" --window-size=1280,980 \
  "http://127.0.0.1:$viewer_port/trace/$trace_id?span=$calendar_span" 2>"$work/chromium.log" \
  || die "chromium failed: $(tail -n 5 "$work/chromium.log")"
[ -s docs/viewer.png ] || die "chromium wrote no docs/viewer.png"
echo "pictures.sh: wrote docs/get_notes.png, docs/add_date.png and docs/viewer.png"
