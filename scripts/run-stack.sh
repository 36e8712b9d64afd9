#!/usr/bin/env bash
# Runs the whole stack on this machine: nats-server with JetStream (installed if missing) and
# every service, with all data under one folder (DATA_ROOT, default ./data). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT="${DATA_ROOT:-$PWD/data}"
NATS_PORT="${NATS_PORT:-4222}"
NATS_MONITOR_PORT="${NATS_MONITOR_PORT:-8222}"
PROFILE="${PROFILE:-release}"
mkdir -p "$DATA_ROOT/nats" "$DATA_ROOT/logs"

NATS_BIN="$(scripts/ensure-nats.sh)"
if [ "$PROFILE" = "release" ]; then cargo build --release --bins; BIN=target/release; else cargo build --bins; BIN=target/debug; fi

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  wait || true
  echo "stopped"
}
trap stop INT TERM EXIT

"$NATS_BIN" -js -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -sd "$DATA_ROOT/nats" \
  >"$DATA_ROOT/logs/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
  sleep 0.1
done
export NATS_URL="nats://127.0.0.1:$NATS_PORT"

start() { # name binary grpc http
  if [ ! -x "$BIN/$2" ]; then return; fi
  DATA_DIR="$DATA_ROOT/$1" GRPC_ADDR="$3" HTTP_ADDR="$4" "$BIN/$2" \
    >"$DATA_ROOT/logs/$1.out" 2>"$DATA_ROOT/logs/$1.log" &
  pids+=($!)
  echo "$2: gRPC $3, HTTP http://$4 (log: $DATA_ROOT/logs/$1.log)"
}
start intake incident-intake 127.0.0.1:50051 127.0.0.1:8080
start sla incident-sla 127.0.0.1:50052 127.0.0.1:8081
start notifier incident-notifier 127.0.0.1:50053 127.0.0.1:8082

echo "nats-server: $NATS_URL (monitoring http://127.0.0.1:$NATS_MONITOR_PORT, store $DATA_ROOT/nats)"
echo "try: $BIN/incidentctl open --title 'Checkout down' --service payments --impact high --urgency high"
echo "Ctrl-C stops everything."
wait -n || true
stop
