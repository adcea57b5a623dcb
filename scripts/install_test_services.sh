#!/usr/bin/env bash
# Debian packages the SLURM tests start (tests/test_slurm.py via scripts/slurm_cluster.sh).
# Idempotent: installs only what is missing. Needs root (CI runs as root).
set -euo pipefail
need=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
