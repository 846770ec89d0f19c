#!/usr/bin/env bash
# Installs the servers the test suite starts on loopback (PostgreSQL for distributed Optuna).
# The tests start and stop their own throw-away server; nothing is left running.
# Needs root (or sudo) for apt-get; where PostgreSQL is already installed it does nothing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL already installed: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The Debian package starts a cluster service on port 5432; the tests use their own, so stop it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
echo "PostgreSQL installed: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
