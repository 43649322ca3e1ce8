#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, for noiselab's `sweep --slurm` tests and CI
# and for trying sweeps locally:
#   bash scripts/slurm-cluster.sh start    install (if missing), configure and start; idempotent
#   bash scripts/slurm-cluster.sh stop     stop slurmd, slurmctld and munged
#   bash scripts/slurm-cluster.sh status   sinfo/squeue; exit 0 if the cluster answers, else 1
# Needs root (apt-get, /etc, daemons started by hand: no systemd needed). What it sets up:
# Debian's slurm-wlm (22.05-era) and munge; one node named `hostname -s` with nproc CPUs,
# partition `debug`; ProctrackType=proctrack/linuxproc, TaskPlugin=task/none (no cgroups),
# SelectType=select/cons_tres with CR_CPU (1-cpu tasks share the node); no accounting
# storage, so no sacct: finished jobs are visible only in squeue/scontrol for MinJobAge.
# /etc/slurm/slurm.conf is written only if absent or written by this script (marker line).
# Logs: /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log, /var/log/munge/munged.log.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

CONF=/etc/slurm/slurm.conf
MARK="# Written by noiselab scripts/slurm-cluster.sh; edit freely after removing this line."
KEY=/etc/munge/munge.key
LOGDIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
NODE=$(hostname -s)

say() { echo "slurm-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }
show_logs() {
  local f
  for f in "$@"; do
    [[ -r $f ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}
pid_of() { cat "$1" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  say "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  local cmd=(apt-get install -y --no-install-recommends slurm-wlm munge)
  "${cmd[@]}" || { apt-get update && "${cmd[@]}"; } || die "apt-get install failed"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 755 /run/munge
  if [[ ! -s $KEY ]]; then
    say "generating $KEY"
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$KEY" --force
    else
      dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
    fi
  fi
  chown munge:munge "$KEY"
  chmod 400 "$KEY"
  if munge_ok; then return 0; fi
  say "starting munged"
  runuser -u munge -- munged --force 2>/dev/null || munged --force ||
    { show_logs /var/log/munge/munged.log; die "munged did not start"; }
  local i
  for i in $(seq 50); do munge_ok && return 0; sleep 0.1; done
  show_logs /var/log/munge/munged.log
  die "munged started but munge -n | unmunge fails"
}

# The configuration this script wants, on stdout.
render_conf() {
  local cpus mem_mb margin
  cpus=$(nproc)
  mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  margin=$((mem_mb / 10 > 256 ? mem_mb / 10 : 256))
  cat <<EOF
$MARK
ClusterName=noiselab
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Default 3 s delays each batch launch; 0 gives ~1 s (slurmctld's 1 s background loop).
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
NodeName=$NODE CPUs=$cpus RealMemory=$((mem_mb - margin)) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# Writes slurm.conf if absent or ours; returns 0 when it changed, 1 when not.
write_conf() {
  local want
  want=$(render_conf)
  if [[ -e $CONF ]]; then
    grep -qxF "$MARK" "$CONF" || { say "keeping $CONF (not written by this script)"; return 1; }
    [[ "$(cat "$CONF")" == "$want" ]] && return 1
  fi
  install -d -m 755 /etc/slurm
  printf '%s\n' "$want" >"$CONF"
  say "wrote $CONF"
}

stop_pid() { # name pidfile
  local pid i
  pid=$(pid_of "$2")
  alive "$2" || return 0
  say "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "$1 (pid $pid) did not stop"
}

start_slurm() {
  local changed=0
  install -d -m 755 "$LOGDIR" /var/spool/slurmd
  install -d -m 700 /var/spool/slurmctld
  write_conf && changed=1
  if ((changed)); then # new node size etc.: restart what runs
    stop_pid slurmd "$SLURMD_PID"
    stop_pid slurmctld "$CTLD_PID"
  fi
  if ! alive "$CTLD_PID"; then
    say "starting slurmctld"
    slurmctld || { show_logs "$LOGDIR/slurmctld.log"; die "slurmctld did not start"; }
  fi
  local i
  for i in $(seq 60); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 1; done
  scontrol ping 2>/dev/null | grep -q 'is UP' ||
    { show_logs "$LOGDIR/slurmctld.log"; die "slurmctld does not answer scontrol ping"; }
  if ! alive "$SLURMD_PID"; then
    say "starting slurmd"
    slurmd || { show_logs "$LOGDIR/slurmd.log"; die "slurmd did not start"; }
  fi
  local state=""
  for i in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1)
    case $state in
      idle | mixed | allocated | completing) say "node $NODE is $state"; return 0 ;;
      down* | drain* | fail*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  show_logs "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"
  die "node $NODE is '${state:-unknown}' after 60 s, not idle"
}

status() {
  scontrol ping 2>/dev/null | grep -q 'is UP' || { say "slurmctld does not answer"; return 1; }
  sinfo
  squeue
}

[[ $(id -u) -eq 0 ]] || die "needs root"
case ${1:-} in
  start)
    install_packages
    start_munge
    start_slurm
    ;;
  stop)
    stop_pid slurmd "$SLURMD_PID"
    stop_pid slurmctld "$CTLD_PID"
    stop_pid munged "$MUNGE_PID"
    ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
