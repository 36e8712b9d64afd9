#!/usr/bin/env bash
# Runs every test of the workspace against real nats-server processes (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN
echo "using $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"
cargo fmt --all -- --check
# the end-to-end tests start the service binaries
cargo build --workspace --bins
cargo test --workspace "$@"
