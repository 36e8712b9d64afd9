#!/usr/bin/env bash
# Prints the path of a nats-server binary, installing Debian's package when none is found.
set -euo pipefail
find_nats() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then echo "$NATS_SERVER_BIN"; return 0; fi
  for p in "$(command -v nats-server 2>/dev/null || true)" /usr/sbin/nats-server /usr/bin/nats-server /usr/local/bin/nats-server; do
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}
if find_nats; then exit 0; fi
echo "nats-server not found; installing Debian's package" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "cannot install nats-server: not root and no sudo; install it (apt-get install nats-server) or set NATS_SERVER_BIN" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq nats-server >&2
# the package enables a system service; this project starts its own servers
$SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
find_nats
