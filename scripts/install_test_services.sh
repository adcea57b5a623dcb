#!/usr/bin/env bash
# Debian packages the service tests start: SLURM (tests/test_slurm.py via scripts/slurm_cluster.sh) and
# PostgreSQL (tests/test_tracking_server.py via scripts/postgres.sh).
# Idempotent: installs only what is missing. Needs root (CI runs as root).
set -euo pipefail
need=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)  # server binaries are off PATH
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
