#!/usr/bin/env bash
# A real single-node SLURM cluster (munge + slurmctld + slurmd, no accounting) in a scratch folder,
# run as plain root daemons without systemd and stopped by their PID files.
#   scripts/slurm_cluster.sh up DIR     # then: export SLURM_CONF=DIR/slurm.conf  (DIR/env says so)
#   scripts/slurm_cluster.sh down DIR
# Debian packages: munge slurmctld slurmd slurm-client (scripts/install_test_services.sh).
# Without accounting `sacct` fails; pae-lab's slurm launcher reads job states from scontrol instead.
set -euo pipefail
cmd=${1:?usage: $0 up|down DIR}
dir=$(realpath -m "${2:?usage: $0 up|down DIR}")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_gone() {  # PID-FILE: SIGTERM, wait up to 15 s, then SIGKILL
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() {
  wait_gone "$dir/slurmd.pid"
  wait_gone "$dir/slurmctld.pid"
  wait_gone "$dir/munge/munged.pid"
}

up() {
  for bin in munged slurmctld slurmd sbatch scontrol sinfo; do
    command -v "$bin" >/dev/null || { echo "$bin not found: run scripts/install_test_services.sh" >&2; exit 3; }
  done
  mkdir -p "$dir"/{munge,state,spool,log}
  chmod 755 "$dir" "$dir/munge"  # munged refuses a socket folder that is not 755
  [ -s "$dir/munge/munge.key" ] || { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$dir/munge/munge.key"; }
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
  local host node ctld_port slurmd_port
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  ctld_port=$(free_port); slurmd_port=$(free_port)
  cat > "$dir/slurm.conf" <<CONF
ClusterName=paelab
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  for _ in $(seq 300); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    [ "$state" = idle ] && { echo "slurm up: SLURM_CONF=$SLURM_CONF (node $host idle)"; return 0; }
    sleep 0.1
  done
  echo "slurm did not reach idle within 30 s (state '${state:-none}'); logs in $dir/log" >&2
  down
  exit 1
}

case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
