#!/usr/bin/env bash
# Installs what the test suite needs outside Python:
#  - PostgreSQL, for distributed Optuna (the tests start and stop their own throw-away server on loopback;
#    nothing is left running);
#  - Chromium, for the browser test of report.html (run headless by the test, then closed);
#  - SLURM (slurmctld, slurmd, the client commands) and munge, for the --cluster slurm test (the test starts
#    its own single-node cluster on loopback in a temporary folder and stops it; the Debian services are
#    stopped here so nothing runs outside the tests).
# Needs root (or sudo) for apt-get; what is already installed is left as it is.
set -euo pipefail
packages=()
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL already installed: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
else
  packages+=(postgresql)
fi
if command -v chromium >/dev/null 2>&1; then
  echo "Chromium already installed: $(command -v chromium)"
else
  packages+=(chromium)
fi
if command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1 \
    && command -v munged >/dev/null 2>&1; then
  echo "SLURM already installed: $(slurmctld -V)"
else
  packages+=(slurmctld slurmd slurm-client munge)
fi
if [ "${#packages[@]}" -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if [[ " ${packages[*]} " == *" postgresql "* ]]; then
  # The Debian package starts a cluster service on port 5432; the tests use their own, so stop it.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
  echo "PostgreSQL installed: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
fi
if [[ " ${packages[*]} " == *" chromium "* ]]; then
  echo "Chromium installed: $(command -v chromium)"
fi
if [[ " ${packages[*]} " == *" slurmctld "* ]]; then
  # The packages may start their services (munge at least); the test runs its own daemons, so stop them.
  for service in slurmd slurmctld munge; do $SUDO service "$service" stop >/dev/null 2>&1 || true; done
  echo "SLURM installed: $(slurmctld -V)"
fi
