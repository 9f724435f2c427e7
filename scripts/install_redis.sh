#!/usr/bin/env bash
# Debian's redis-server 7 for the real-time stream and session state (docs/realtime.md).
# Idempotent: does nothing when redis-server is already on the PATH. The project starts its own
# instance (tessera.realtime.redis_server); the package's system service is not needed.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    redis-server --version
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
redis-server --version
