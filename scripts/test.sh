#!/usr/bin/env bash
# Runs every test of the workspace against real nats-server processes (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN
echo "using $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"
# the TLS tests make their certificates with openssl
if ! command -v openssl >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq openssl >&2; else sudo apt-get install -y -qq openssl >&2; fi
fi
cargo fmt --all -- --check
# the end-to-end tests start the service binaries
cargo build --workspace --bins
cargo test --workspace "$@"
