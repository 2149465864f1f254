#!/usr/bin/env bash
# Smoke test of the one-command start, as a person runs it: `make up` on a fresh
# data dir must serve gRPC (health SERVING, reflection), and SIGTERM must stop it
# within 15 s leaving no Postgres or Valkey process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly START_TIMEOUT_S=300 STOP_TIMEOUT_S=15
grpcurl=.venv/bin/grpcurl
root=$(mktemp -d /tmp/memoryd-smoke.XXXXXX)
# As root, Postgres runs as the 'pgserver' user, which must traverse this dir.
chmod 755 "$root"
log=$root/up.log
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port

fail() {
  echo "smoke: FAILED: $*" >&2
  echo "---- make up output ----" >&2
  cat "$log" >&2 || true
  exit 1
}

# setsid: make and memoryd get their own process group, signalled as a terminal
# would signal them (GNU make does not pass SIGTERM on to its recipe).
setsid env MEMORYD_DATA_DIR="$root/data" MEMORYD_LISTEN="$addr" \
  make --no-print-directory up >"$log" 2>&1 </dev/null &
group=$!
cleanup() {
  kill -KILL -- "-$group" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

echo "smoke: make up on $addr (data in $root/data)"
deadline=$((SECONDS + START_TIMEOUT_S))
until "$grpcurl" -plaintext -max-time 2 "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; do
  kill -0 "$group" 2>/dev/null || fail "make up exited before serving"
  ((SECONDS < deadline)) || fail "not SERVING after ${START_TIMEOUT_S}s"
  sleep 1
done
"$grpcurl" -plaintext "$addr" list | grep -qx memoryd.v1.SessionService ||
  fail "reflection does not list memoryd.v1.SessionService"
echo "smoke: serving after $((START_TIMEOUT_S - (deadline - SECONDS)))s"

up_pid=$(pgrep -P "$group" -f "memoryd up") || fail "no memoryd up process under make"
kill -TERM -- "-$group"
stop_deadline=$((SECONDS + STOP_TIMEOUT_S))
while kill -0 "$up_pid" 2>/dev/null; do
  ((SECONDS < stop_deadline)) || fail "memoryd up still running ${STOP_TIMEOUT_S}s after SIGTERM"
  sleep 0.2
done
grep -q "memoryd: stopped$" "$log" || fail "memoryd up did not report a clean stop"
left=$(.venv/bin/python -c '
import sys
from pathlib import Path
from tests.support.processes import store_processes
print(" ".join(f"{p.name()}:{p.pid}" for p in store_processes(Path(sys.argv[1]))))
' "$root/data")
[[ -z $left ]] || fail "store processes left running: $left"
echo "smoke: SIGTERM stopped everything cleanly; no postgres or valkey left"
