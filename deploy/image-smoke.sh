#!/usr/bin/env bash
# Runs a built memoryd image against real stores and checks what a platform
# engineer relies on: `migrate`, `serve` and `worker` start on a read-only root
# filesystem as a non-root user, the image's HEALTHCHECK turns healthy, gRPC
# health says SERVING, a memory written through the server is found by search
# once the worker has embedded it, and both containers stop on SIGTERM before
# docker's 10 s kill.
#
#   MEMORYD_POSTGRES_URL=postgresql://... MEMORYD_REDIS_URL=redis://... \
#     deploy/image-smoke.sh [IMAGE]        # IMAGE defaults to memoryd:latest
#
# The containers use the host's network, so the URLs are the ones the host
# uses (Postgres over TCP: a unix socket is not shared with the container).
# Needs docker and a Python with memoryd-client (PYTHON, default the repo's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-memoryd:latest}
PYTHON=${PYTHON:-.venv/bin/python}
PORT=${MEMORYD_SMOKE_PORT:-57051}
: "${MEMORYD_POSTGRES_URL:?set MEMORYD_POSTGRES_URL}" "${MEMORYD_REDIS_URL:?set MEMORYD_REDIS_URL}"
export PYTHONPATH=$PWD/clients/python${PYTHONPATH:+:$PYTHONPATH}
SERVE=memoryd-smoke-serve-$$
WORKER=memoryd-smoke-worker-$$
run=(docker run --network host --read-only --tmpfs /tmp
  -e MEMORYD_POSTGRES_URL -e MEMORYD_REDIS_URL -e "MEMORYD_LISTEN=127.0.0.1:$PORT")
cleanup() { docker rm -f "$SERVE" "$WORKER" >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; docker logs "$SERVE" 2>&1 | tail -20 >&2 || true; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "image $IMAGE: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.2f GB", $1 / 1e9 }')"
"${run[@]}" --rm "$IMAGE" migrate || fail "migrate exited $?"

start=$(now)
"${run[@]}" -d --name "$SERVE" "$IMAGE" serve >/dev/null
"$PYTHON" - "127.0.0.1:$PORT" <<'EOF' || fail "serve never reported SERVING"
import sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    # A fresh channel each time: a refused connect puts a channel into backoff.
    with grpc.insecure_channel(sys.argv[1]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                sys.exit(0)
        except grpc.RpcError:
            pass
    time.sleep(0.2)
sys.exit(1)
EOF
echo "ok   serve: SERVING $(secs "$start" "$(now)") s after docker run"
user=$(docker exec "$SERVE" id -u)
[[ $user != 0 ]] || fail "serve runs as root"
echo "ok   serve runs as uid $user on a read-only root filesystem"

start=$(now)
"${run[@]}" -d --no-healthcheck --name "$WORKER" "$IMAGE" worker >/dev/null
"$PYTHON" - "127.0.0.1:$PORT" <<'EOF' || fail "round trip"
import sys, time, uuid
from memoryd.client import DeadlineExceeded, MemoryClient
user = f"smoke-{uuid.uuid4().hex[:8]}"
with MemoryClient(sys.argv[1]) as client:
    try:
        client.memories.add(user, "Alice is vegetarian and loves lentil soup", topics=["diet"])
        # wait_for_index: answered once the worker container has embedded it. The
        # server waits at most max_index_wait (10 s) per call, and the worker needs
        # longer than that to start (torch and the model): ask again meanwhile.
        deadline = time.monotonic() + 180
        while True:
            try:
                hits = client.memories.search(
                    "what food does she eat?", user_id=user, wait_for_index=True, timeout=15
                )
                break
            except DeadlineExceeded:
                if time.monotonic() > deadline:
                    raise
        assert hits and "lentil" in hits[0].memory.content, hits
    finally:
        client.memories.clear(user)
EOF
echo "ok   CreateMemory + SearchMemories(wait_for_index) through serve and worker:" \
  "$(secs "$start" "$(now)") s after the worker's docker run"
[[ $(docker exec "$WORKER" id -u) != 0 ]] || fail "worker runs as root"

for _ in $(seq 90); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$SERVE")
  [[ $health == starting ]] || break
  sleep 2
done
[[ $health == healthy ]] || fail "HEALTHCHECK says $health"
echo "ok   HEALTHCHECK: healthy"

for name in "$SERVE" "$WORKER"; do
  start=$(now)
  docker stop "$name" >/dev/null
  took=$(secs "$start" "$(now)")
  code=$(docker inspect --format '{{.State.ExitCode}}' "$name")
  [[ $code == 0 ]] || fail "${name%-*} exited $code on SIGTERM (137: killed after the grace period)"
  echo "ok   ${name%-*} stopped on SIGTERM in $took s (exit 0)"
done
echo "image smoke test passed"
