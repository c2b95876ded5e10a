#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (munge, slurmctld, slurmd from Debian's packages),
# for tests/slurm.rs, which submits the examples in examples/slurm/ to it. Idempotent: does
# nothing when `sinfo` already answers, and never replaces an existing /etc/slurm/slurm.conf
# (a machine that is part of a real cluster keeps its own). Needs root and apt-get.
set -euo pipefail

say() { printf '[local-slurm] %s\n' "$*"; }

if command -v sinfo >/dev/null 2>&1 && sinfo -h -o %a 2>/dev/null | grep -q up; then
  say "a Slurm cluster answers already"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "not root or no apt-get: no local Slurm (tests/slurm.rs will say it has nothing to submit to)"
  exit 0
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1; then
  say "installing slurm-wlm and munge from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[ -f /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi

if [ ! -f /etc/slurm/slurm.conf ]; then
  say "writing a one-node /etc/slurm/slurm.conf"
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  # `slurmd -C` prints this node's line: name, CPUs, sockets, cores, memory.
  node=$(slurmd -C | head -1)
  cat >/etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node State=UNKNOWN
PartitionName=local Nodes=$(hostname -s) Default=YES MaxTime=INFINITE State=UP
CONF
fi
pgrep -x slurmctld >/dev/null || { say "starting slurmctld"; slurmctld; }
pgrep -x slurmd >/dev/null || { say "starting slurmd"; slurmd; }
# Up means a job runs: a partition marked up can still have its only node down, and then
# `sbatch --wait` would wait forever. Without a job that finishes, the daemons are stopped so
# that `sinfo` does not answer and tests/slurm.rs skips.
for _ in $(seq 30); do
  if sinfo -h -o %t 2>/dev/null | grep -Eq 'idle|mix|alloc'; then
    if timeout 60 sbatch --wait --quiet --output=/dev/null --wrap true >/dev/null 2>&1; then
      say "up: $(sinfo -h -o '%P %D %t' | head -1)"
      exit 0
    fi
    break
  fi
  sleep 1
done
say "slurmctld/slurmd did not run a job; stopping them (see /var/log/slurm/)"
pkill -x slurmd || true
pkill -x slurmctld || true
exit 0
