#!/usr/bin/env bash
# End-to-end check of docker/ and compose/ on a machine with Docker and docker-compose (or the
# `docker compose` plugin), as root. Needs curl and python3 on the host.
#
#   1. makes local stand-ins for the base images (docker/base-images.sh; cached by recipe hash)
#   2. builds the notes and calendar images and starts the stack with the test agent
#      (`--profile testagent`, DD_AGENT_HOST=testagent) under a project name of its own,
#      on free host ports
#   3. runs the tutorial's curl sequence and checks, through the test agent, that a
#      POST /notes?add_date=y arrived as one trace with spans of both `notes` and `calendar`,
#      that the health checks were not traced, and that the trace viewer shows the trace
#   4. stops calendar, then db, checking the 503 answers and the recovery; then `down` (keeping
#      the volume) and `up`, checking the notes are still there
#   5. always removes its containers, networks and volumes (images are kept as the build cache)
#
# Env: VERIFY_PROJECT (compose project name), VERIFY_KEEP=1 (leave the stack running for a look;
# remove it with the `down -v` command printed at the end).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COMPOSE_FILE="$ROOT/compose/docker-compose.yaml"
PROJECT="${VERIFY_PROJECT:-apmtutverify$$}"
WORK="$(mktemp -d /tmp/apm-verify.XXXXXX)"
PASSED=0
FAILED=0
T0=$SECONDS

log() { printf '[verify %4ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { log "FATAL: $*"; exit 1; }
ok() { PASSED=$((PASSED + 1)); log "ok   - $*"; }
not_ok() { FAILED=$((FAILED + 1)); log "FAIL - $*"; }

for tool in docker curl python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
if command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  die "neither docker-compose nor the docker compose plugin is installed"
fi
# Without buildx the Docker CLI can only use the classic builder; the Dockerfiles need nothing more.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0; fi

compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" --profile testagent "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)) || ((FAILED > 0)); then
    log "logs of the stack (last lines):"
    compose logs --no-color --tail=60 2>&1 | sed 's/^/    /' || true
  fi
  if [[ "${VERIFY_KEEP:-0}" == 1 ]]; then
    log "VERIFY_KEEP=1: stack left running; remove it with:"
    log "  ${COMPOSE[*]} -p $PROJECT -f $COMPOSE_FILE --profile testagent down -v"
  else
    compose down -v --remove-orphans -t 5 >"$WORK/down.log" 2>&1 || cat "$WORK/down.log"
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- free host ports -------------------------------------------------------------------------
read -r NOTES_HOST_PORT CALENDAR_HOST_PORT DB_HOST_PORT TESTAGENT_HOST_PORT TRACEVIEW_HOST_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
EOF
)
export NOTES_HOST_PORT CALENDAR_HOST_PORT DB_HOST_PORT TESTAGENT_HOST_PORT TRACEVIEW_HOST_PORT
export DD_AGENT_HOST=testagent DD_TRACE_AGENT_PORT=8126 DD_ENV=verify DD_TRACE_ENABLED=true
export TESTAGENT_SNAPSHOT_DIR="$WORK/snapshots" TESTAGENT_ENABLED_CHECKS=""
mkdir -p "$TESTAGENT_SNAPSHOT_DIR"
NOTES="http://127.0.0.1:$NOTES_HOST_PORT"
CALENDAR="http://127.0.0.1:$CALENDAR_HOST_PORT"
AGENT="http://127.0.0.1:$TESTAGENT_HOST_PORT"
VIEWER="http://127.0.0.1:$TRACEVIEW_HOST_PORT"
log "project $PROJECT; ports notes=$NOTES_HOST_PORT calendar=$CALENDAR_HOST_PORT db=$DB_HOST_PORT testagent=$TESTAGENT_HOST_PORT viewer=$TRACEVIEW_HOST_PORT"

# ---- helpers ---------------------------------------------------------------------------------
# req METHOD URL: sets STATUS and BODY
req() {
  STATUS="$(curl -sS -o "$WORK/body" -w '%{http_code}' --max-time 30 -X "$1" "$2" 2>"$WORK/curl.err" || true)"
  BODY="$(cat "$WORK/body" 2>/dev/null || true)"
  [[ -n "$STATUS" && "$STATUS" != 000 ]] || BODY="(no answer: $(cat "$WORK/curl.err"))"
  : >"$WORK/body"
}

# expect METHOD PATH STATUS BODY_REGEX (on notes): checks, sets MATCH to BASH_REMATCH
expect() {
  local method=$1 path=$2 status=$3 regex=$4
  req "$method" "$NOTES$path"
  if [[ "$STATUS" == "$status" && "$BODY" =~ $regex ]]; then
    MATCH=("${BASH_REMATCH[@]}")
    ok "$method $path -> $STATUS $(printf '%q' "$BODY")"
  else
    MATCH=()
    not_ok "$method $path -> $STATUS $(printf '%q' "$BODY") (wanted $status matching /$regex/)"
  fi
}

container_of() { compose ps -q "$1"; }

wait_healthy() {
  local svc=$1 limit=${2:-120} cid state start=$SECONDS
  while :; do
    cid="$(container_of "$svc")"
    state="$([[ -n "$cid" ]] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$cid" 2>/dev/null || echo missing)"
    [[ "$state" == healthy ]] && { log "$svc healthy after $((SECONDS - start))s"; return 0; }
    ((SECONDS - start < limit)) || die "$svc not healthy after ${limit}s (state: $state)"
    sleep 1
  done
}

wait_http() {
  local url=$1 want=$2 limit=${3:-60} start=$SECONDS
  while :; do
    req GET "$url"
    [[ "$STATUS" == "$want" ]] && return 0
    ((SECONDS - start < limit)) || { log "$url: $STATUS after ${limit}s: $BODY"; return 1; }
    sleep 1
  done
}

# ---- 1. base images --------------------------------------------------------------------------
log "base images"
"$HERE/base-images.sh"

# ---- 2. build and start ----------------------------------------------------------------------
start=$SECONDS
log "building images (${COMPOSE[*]} --profile testagent build)"
# --force-rm: a failed step leaves no container behind. No --pull: there may be no registry.
if ! "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" --profile testagent build --force-rm >"$WORK/build.log" 2>&1; then
  tail -n 80 "$WORK/build.log"
  die "build failed"
fi
log "images built in $((SECONDS - start))s"
# With the classic builder the build stages' last layers are untagged, so `docker image prune`
# would drop the compiled dependencies; a tag on the builder stage's last layer keeps them.
builder_tip="$(awk '/^ ---> [0-9a-f]+$/ { id = $2 } /^Step .*FROM .* AS runtime/ { print id; exit }' "$WORK/build.log")"
[[ -n "$builder_tip" ]] && docker tag "$builder_tip" apm-tutorial-rust/build-cache:local 2>/dev/null || true

vuser="$(docker image inspect -f '{{.Config.User}}' apm-tutorial-rust/viewer:local)"
[[ -n "$vuser" && "$vuser" != root && "$vuser" != 0 && "$vuser" != 0:* ]] &&
  ok "viewer image runs as non-root user $vuser" || not_ok "viewer image user is '$vuser'"
for svc in notes calendar; do
  img="apm-tutorial-rust/$svc:local"
  user="$(docker image inspect -f '{{.Config.User}}' "$img")"
  [[ -n "$user" && "$user" != root && "$user" != 0 && "$user" != 0:* ]] &&
    ok "$svc image runs as non-root user $user" || not_ok "$svc image user is '$user'"
  labels="$(docker image inspect -f '{{index .Config.Labels "com.datadoghq.tags.service"}}/{{index .Config.Labels "com.datadoghq.tags.env"}}/{{index .Config.Labels "com.datadoghq.tags.version"}}' "$img")"
  [[ "$labels" == "$svc/dev/0.1.0" ]] && ok "$svc image tags $labels" || not_ok "$svc image tags '$labels'"
  if docker run --rm --entrypoint /bin/sh "$img" -c \
    'command -v cargo || command -v rustc || command -v gcc || command -v cc || ls -d /src /usr/local/cargo 2>/dev/null' \
    >"$WORK/leak" 2>&1; then
    not_ok "$svc image carries build tools or sources: $(tr '\n' ' ' <"$WORK/leak")"
  else
    ok "$svc image has no compiler, toolchain or sources ($(docker image inspect -f '{{.Size}}' "$img" | awk '{printf "%.0f MB", $1/1e6}'))"
  fi
done

start=$SECONDS
log "starting the stack"
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; die "up failed"; }
wait_healthy db
wait_healthy calendar
wait_healthy notes
wait_http "$AGENT/info" 200 60 || die "test agent not answering"
wait_http "$VIEWER/" 200 60 || die "trace viewer not answering"
log "stack up in $((SECONDS - start))s"

# ---- 3. the tutorial's requests and the trace ------------------------------------------------
expect GET / 200 'Welcome'
expect GET /notes 200 '^\{\}[[:space:]]*$'
expect POST '/notes?desc=hello' 201 '^\(([0-9]+), hello\)$'
ID1="${MATCH[1]:-1}"
expect GET "/notes?id=$ID1" 200 "^\\($ID1, hello\\)\$"
expect PUT "/notes?id=$ID1&desc=UpdatedNote" 200 "^\\($ID1, UpdatedNote\\)\$"
expect DELETE "/notes?id=$ID1" 200 '^Deleted$'
expect POST '/notes?desc=hello_again&add_date=y' 201 '^\(([0-9]+), hello_again with date [0-9]{2}/[0-9]{2}/[0-9]{4}\)$'
ID2="${MATCH[1]:-2}"
expect GET /notes 200 "\"$ID2\": \"hello_again with date"
req GET "$CALENDAR/calendar"
[[ "$STATUS" == 200 && "$BODY" =~ [0-9]{2}/[0-9]{2}/[0-9]{4} ]] &&
  ok "calendar GET /calendar -> $STATUS $BODY" || not_ok "calendar GET /calendar -> $STATUS $BODY"

# One trace with spans of notes and calendar, a calendar span being the child of a notes span.
# Spans are exported in batches: poll the test agent for a while.
check_trace() {
  curl -sS --max-time 10 "$AGENT/test/traces" -o "$WORK/traces.json" || return 1
  python3 - "$WORK/traces.json" <<'EOF'
import json, sys
traces = json.load(open(sys.argv[1]))
for trace in traces:
    services = {s.get("service") for s in trace}
    if not {"notes", "calendar"} <= services:
        continue
    ids = {s["span_id"] for s in trace}
    # the root is notes' POST /notes; a calendar span's parent is a span of this trace (the
    # HTTP client span in notes): the context crossed the process boundary
    roots = [s for s in trace if not s.get("parent_id") or s.get("parent_id") not in ids]
    if len(roots) != 1 or roots[0].get("service") != "notes" or "POST" not in json.dumps(roots[0]):
        continue
    if not any(s.get("service") == "calendar" and s.get("parent_id") in ids for s in trace):
        continue
    print(f"trace {trace[0]['trace_id']}: {len(trace)} spans:")
    for s in sorted(trace, key=lambda s: s.get("start", 0)):
        print(f"      {s.get('service')}: {s.get('name')} [{s.get('resource')}] span {s['span_id']} parent {s.get('parent_id')}")
    sys.exit(0)
shown = [t for t in traces if not any("/health" in str(s.get("resource")) for s in t)]
print(f"no POST /notes trace rooted in notes with a linked calendar span among {len(traces)} traces; "
      "those not for /health: "
      + "; ".join(",".join(sorted({str(s.get('service')) + ':' + str(s.get('resource')) for s in t})) for t in shown[:10]))
sys.exit(1)
EOF
}
start=$SECONDS
until check_trace >"$WORK/trace.txt" 2>&1; do
  ((SECONDS - start < 45)) || break
  sleep 2
done
if grep -q '^trace ' "$WORK/trace.txt"; then
  ok "POST add_date=y is one trace across notes and calendar: $(cat "$WORK/trace.txt")"
else
  not_ok "trace check: $(cat "$WORK/trace.txt")"
fi

# The health checks (every 5 s per service) are not traced.
curl -sS --max-time 10 "$AGENT/test/traces" -o "$WORK/traces.json" || true
health="$(python3 -c 'import json,sys; print(sum(1 for t in json.load(open(sys.argv[1])) for s in t if s.get("resource") == "GET /health"))' "$WORK/traces.json" 2>&1 || true)"
[[ "$health" == 0 ]] && ok "no GET /health spans in the test agent" || not_ok "GET /health spans in the test agent: $health"

# The viewer lists the traces and shows the add_date trace as complete.
viewer_check() {
  curl -sS --max-time 10 "$VIEWER/api/traces?resource=POST%20/notes" -o "$WORK/viewer.json" || return 1
  python3 - "$WORK/viewer.json" <<'EOF'
import json, sys
traces = json.load(open(sys.argv[1]))["traces"]
whole = [t for t in traces if t["complete"] and "calendar" in t["services"]]
print(f"{len(traces)} POST /notes traces; {len(whole)} complete with calendar: "
      + ", ".join(f"{t['trace_id']} ({t['span_count']} spans)" for t in whole))
sys.exit(0 if whole else 1)
EOF
}
start=$SECONDS
until viewer_check >"$WORK/viewer.txt" 2>&1; do
  ((SECONDS - start < 30)) || break
  sleep 2
done
tid="$(sed -n 's/.*complete with calendar: \([0-9][0-9]*\).*/\1/p' "$WORK/viewer.txt")"
if [[ -n "$tid" ]]; then
  req GET "$VIEWER/trace/$tid"
  [[ "$STATUS" == 200 && "$BODY" == *'data-service="calendar"'* ]] &&
    ok "viewer: $(cat "$WORK/viewer.txt"); /trace/$tid shows the flame graph" ||
    not_ok "viewer /trace/$tid -> $STATUS"
else
  not_ok "viewer: $(cat "$WORK/viewer.txt" 2>/dev/null)"
fi

# ---- 4. failures and recovery ----------------------------------------------------------------
log "stopping calendar"
compose stop -t 10 calendar >/dev/null 2>&1
expect POST '/notes?desc=no_date&add_date=y' 503 '^Cannot reach calendar service\.$'
expect GET /notes 200 "\"$ID2\": "
expect POST '/notes?desc=without_calendar' 201 '^\(([0-9]+), without_calendar\)$'
log "starting calendar"
compose start calendar >/dev/null 2>&1
wait_healthy calendar
expect POST '/notes?desc=calendar_back&add_date=y' 201 '^\(([0-9]+), calendar_back with date [0-9]{2}/[0-9]{2}/[0-9]{4}\)$'

log "stopping db"
compose stop -t 10 db >/dev/null 2>&1
expect GET /notes 503 '^Database unavailable$'
expect POST '/notes?desc=no_db' 503 '^Database unavailable$'
expect GET / 200 'Welcome'
log "starting db"
compose start db >/dev/null 2>&1
wait_healthy db
wait_http "$NOTES/notes?id=$ID2" 200 60 || true
expect GET "/notes?id=$ID2" 200 "^\\($ID2, hello_again with date"
wait_healthy notes 60

# ---- 5. the volume keeps the notes across down/up --------------------------------------------
log "down (volume kept) and up"
compose down -t 10 >"$WORK/down1.log" 2>&1 || { cat "$WORK/down1.log"; die "down failed"; }
compose up -d >"$WORK/up2.log" 2>&1 || { cat "$WORK/up2.log"; die "second up failed"; }
wait_healthy notes
expect GET "/notes?id=$ID2" 200 "^\\($ID2, hello_again with date [0-9]{2}/[0-9]{2}/[0-9]{4}\\)\$"

log "done in $((SECONDS - T0))s"
echo "docker-verify: $PASSED passed, $FAILED failed"
((FAILED == 0))
