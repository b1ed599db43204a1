#!/usr/bin/env bash
# Instruction profile of one service binary serving sequential keep-alive requests, under
# `valgrind --tool=callgrind` (instruction counts do not depend on the machine's load).
#
#   bash crates/bench/scripts/callgrind.sh OUTDIR BINARY TRACING(true|false) [N] [PATH] [METHOD]
#
# e.g. bash crates/bench/scripts/callgrind.sh /tmp/cg-on target/bench-bins/project/calendar true
#      SERVICE_ENV="DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres" \
#        bash crates/bench/scripts/callgrind.sh /tmp/cg-notes target/release/notes false 2000 /notes?id=1
# Starts a trace sink (sink.py) on a free loopback port, the binary under callgrind (WORKERS=1,
# RUST_LOG=info, DD_SERVICE=the binary's name, DD_TRACE_ENABLED=TRACING, plus the KEY=VALUE
# words of SERVICE_ENV), 200 warm-up requests, zeroes the counters, N (2000) METHOD (GET)
# requests to PATH (/calendar), waits 3 s for the last export, and dumps OUTDIR/cg.out.1.
# LOAD_HEADERS="name: value|name: value" adds headers to every request (see load.py).
# Read it with `callgrind_annotate --inclusive=yes OUTDIR/cg.out.1`. Needs valgrind (Debian).
# SINK=production: the sink plays a production Agent (sink.py --production: /info with
# /v0.6/stats and client_drop_p0s, rates of 1%), the benchmark's production-sampling path.
set -euo pipefail
out=$1 bin=$(realpath "$2") tracing=$3 n=${4:-2000} path=${5:-/calendar} method=${6:-GET}
read -r -a service_env <<< "${SERVICE_ENV:-}"
here=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
# vgdb (callgrind_control) names its pipe after USER and HOST; the service reads HOST too.
export USER=${USER:-root} LOGNAME=${LOGNAME:-root} HOST=127.0.0.1
rm -rf "$out"; mkdir -p "$out"; cd "$out"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
sp=$(free_port) cp=$(free_port)
sink_args=(); [ "${SINK:-}" = production ] && sink_args=(--production)
python3 "$here/sink.py" "$sp" "${sink_args[@]}" 2> sink.log & spid=$!
env -i PATH=/usr/bin:/bin USER="$USER" LOGNAME="$LOGNAME" HOST=127.0.0.1 PORT="$cp" WORKERS=1 \
  DD_SERVICE="$(basename "$bin")" DD_ENV=bench NOTES_HELPER_DELAY_SCALE=0 "${service_env[@]}" DD_TRACE_ENABLED="$tracing" \
  DD_TRACE_AGENT_URL="http://127.0.0.1:$sp" RUST_LOG=info \
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$bin" > svc.log 2>&1 & vpid=$!
trap 'kill -TERM $vpid 2>/dev/null; kill $spid 2>/dev/null' EXIT
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$cp/" && break; sleep 0.2; done
python3 "$here/load.py" "$cp" "$path" 200 "$method" >/dev/null
sleep 2.5
callgrind_control -z "$vpid" >/dev/null
ok=$(python3 "$here/load.py" "$cp" "$path" "$n" "$method")
sleep 3
callgrind_control -d "$vpid" >/dev/null
total=$(grep -m1 '^summary' cg.out.1 | awk '{print $2}')
echo "$ok of $n answered 2xx; $total instructions ($((total / n)) per request); $(grep -c traces sink.log || true) trace posts, $(grep -c /v0.6/stats sink.log || true) stats posts"
