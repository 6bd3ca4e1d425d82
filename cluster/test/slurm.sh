#!/usr/bin/env bash
# A private one-node Slurm cluster (22.05, Debian packages) for tests, all state in one folder:
#   slurm.sh start DIR   munged + slurmctld + slurmd with DIR/slurm.conf; waits until the node is idle
#   slurm.sh stop DIR    cancels every job, shuts the daemons down, kills what is left, removes nothing
# Clients need SLURM_CONF=DIR/slurm.conf. The keys are the ones measured to work on Debian 12 without
# systemd or cgroups (linuxproc tracking, pmix, munge on a private socket, fast scheduling, requeue allowed).
# Needs root and the packages slurmctld slurmd slurm-client munge (scripts/setup --tests).
set -euo pipefail
cmd=${1:?usage: slurm.sh start|stop DIR}
dir=${2:?usage: slurm.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
export SLURM_CONF=$dir/slurm.conf

pid_of() { [ -f "$1" ] && cat "$1" 2>/dev/null || true; }
stop_all() {
  if [ -f "$dir/slurm.conf" ] && [ -S "$dir/munge/munge.socket" ]; then
    timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
    sleep 0.5
    timeout 10 scontrol shutdown 2>/dev/null || true
  fi
  for f in slurmctld.pid slurmd.pid munged.pid; do
    p=$(pid_of "$dir/$f")
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  # Job processes outlive the daemons (slurmstepd); only those of this cluster's jobs.
  for p in $(pgrep -x slurmstepd || true); do kill -9 "$p" 2>/dev/null || true; done
  # Any daemon still holding the fixed ports (a previous run of this script that died).
  for p in $(pgrep -f "slurmctld -f $dir/|slurmd -f $dir/|munged .*$dir/" || true); do kill -9 "$p" 2>/dev/null || true; done
  sleep 0.2
}

case "$cmd" in
  start)
    for b in munged slurmctld slurmd sbatch scontrol; do
      command -v "$b" >/dev/null || { echo "slurm.sh: $b is not installed (scripts/setup --tests installs slurmctld slurmd slurm-client munge)" >&2; exit 1; }
    done
    stop_all
    rm -rf "$dir/state" "$dir/spool" "$dir/munge"
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 711 "$dir" "$dir/munge"
    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 600 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munge.seed" </dev/null >/dev/null 2>&1
    cat > "$dir/slurm.conf" <<CONF
ClusterName=loomtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
CommunicationParameters=NoInAddrAny
MailProg=/bin/true
SchedulerParameters=bf_interval=1,sched_interval=1
JobRequeue=1
JobFileAppend=1
KillWait=5
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=node1 NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP
CONF
    # The daemons must not keep the caller's stdout/stderr open (a test reading them to the end would wait for ever).
    slurmctld -f "$dir/slurm.conf" </dev/null >"$dir/slurmctld.out" 2>&1
    slurmd -f "$dir/slurm.conf" -N node1 </dev/null >"$dir/slurmd.out" 2>&1
    for _ in $(seq 1 100); do
      state=$(sinfo -h -n node1 -o %T 2>/dev/null || true)
      [ "$state" = idle ] && { echo "slurm.sh: cluster up (node1 idle)"; exit 0; }
      sleep 0.1
    done
    echo "slurm.sh: node1 did not become idle in 10 s (state '${state:-none}'); see $dir/slurmctld.log and $dir/slurmd.log" >&2
    exit 1
    ;;
  stop) stop_all; echo "slurm.sh: cluster stopped" ;;
  *) echo "slurm.sh: unknown command '$cmd' (expected start or stop)" >&2; exit 2 ;;
esac
