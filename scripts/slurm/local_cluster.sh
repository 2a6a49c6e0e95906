#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for `make slurm-check` (tests/test_slurm.py).
#
#   scripts/slurm/local_cluster.sh start    install slurm-wlm + munge where missing (root, apt), write
#                                           $MAMMOSEG_SLURM_DIR/slurm.conf, start munged, slurmctld, slurmd
#                                           and wait (bounded) until the node takes jobs
#   scripts/slurm/local_cluster.sh stop     stop the daemons this script started
#   scripts/slurm/local_cluster.sh conf     print the path of slurm.conf (export it as SLURM_CONF)
#
# The cluster: localhost as controller and only node, the machine's CPUs and memory (no GPU: CPU
# tasks), select/cons_tres by CPU, one partition "local", JobRequeue=1, all state under
# $MAMMOSEG_SLURM_DIR (default /tmp/mammoseg-slurm). Nothing under /etc is written; clients find the
# configuration through SLURM_CONF. Exit status 0 when the cluster takes jobs; otherwise 1 with one
# line on stderr saying why (no root, no apt, a daemon that does not start in time).
set -euo pipefail

DIR=${MAMMOSEG_SLURM_DIR:-/tmp/mammoseg-slurm}
CONF=$DIR/slurm.conf
START_TIMEOUT=${MAMMOSEG_SLURM_START_TIMEOUT:-60}
APT_TIMEOUT=${MAMMOSEG_SLURM_APT_TIMEOUT:-600}
PARTITION=local
export SLURM_CONF=$CONF

die() { echo "local_cluster: $*" >&2; exit 1; }

have_slurm() {
    local tool
    for tool in slurmctld slurmd munged sbatch scontrol sinfo; do
        command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null 2>&1 || return 1
    done
}

install_missing() {
    have_slurm && return 0
    [[ $(id -u) -eq 0 ]] || die "slurm-wlm and munge are not installed and this is not root (apt needs root)"
    command -v apt-get >/dev/null 2>&1 || die "slurm-wlm and munge are not installed and there is no apt-get"
    echo "local_cluster: installing slurm-wlm and munge (apt)" >&2
    timeout "$APT_TIMEOUT" apt-get update -qq >&2 || die "apt-get update failed or took over ${APT_TIMEOUT}s"
    DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" apt-get install -y -qq slurm-wlm munge >&2 \
        || die "apt-get install slurm-wlm munge failed or took over ${APT_TIMEOUT}s"
    have_slurm || die "slurm-wlm installed but its daemons are not on PATH"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already serving this machine: use it, and leave it running at stop
    fi
    [[ -f /etc/munge/munge.key ]] || mungekey --create >/dev/null 2>&1 || die "no munge key and mungekey failed"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    if id munge >/dev/null 2>&1; then
        chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key
        runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged did not start"
    else
        munged --force --pid-file=/run/munge/munged.pid || die "munged did not start"
    fi
    wait_for "munged" bash -c 'munge -n </dev/null | unmunge >/dev/null 2>&1'
    cp /run/munge/munged.pid "$DIR/munged.pid"
}

write_conf() {
    local node memory
    node=$(PATH=$PATH:/usr/sbin slurmd -C | head -n 1)  # NodeName=<host> CPUs=... RealMemory=<MB>
    memory=${node##*RealMemory=}
    node="${node% RealMemory=*} RealMemory=$((memory * 9 / 10)) NodeAddr=127.0.0.1 State=UNKNOWN"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<EOF
# written by scripts/slurm/local_cluster.sh: a one-node cluster for tests
ClusterName=mammoseg-local
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
MinJobAge=3600
KillWait=10
$node
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_for() {  # wait_for WHAT COMMAND...: until COMMAND succeeds, at most START_TIMEOUT seconds
    local what=$1 waited=0
    shift
    until "$@" >/dev/null 2>&1; do
        ((waited < START_TIMEOUT)) || die "$what not ready after ${START_TIMEOUT}s (logs in $DIR/log)"
        sleep 1
        waited=$((waited + 1))
    done
}

node_idle() { [[ $(sinfo -h -p "$PARTITION" -o %t 2>/dev/null) == idle* || $(sinfo -h -p "$PARTITION" -o %t 2>/dev/null) == mix* ]]; }

start() {
    install_missing
    export PATH=$PATH:/usr/sbin
    mkdir -p "$DIR"
    if [[ -f $CONF ]] && scontrol ping 2>/dev/null | grep -q UP && node_idle; then
        echo "$CONF"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "starting slurmd needs root"
    start_munge
    rm -rf "$DIR/state" "$DIR/spool"  # a fresh cluster: no job of an earlier one comes back
    write_conf
    slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
    wait_for "slurmctld" bash -c 'scontrol ping | grep -q UP'
    slurmd -f "$CONF" || die "slurmd did not start (see $DIR/log/slurmd.log)"
    wait_for "the node" node_idle
    echo "$CONF"
}

stop() {
    export PATH=$PATH:/usr/sbin
    local name pid
    for name in slurmd slurmctld munged; do
        [[ -f $DIR/$name.pid ]] || continue
        pid=$(cat "$DIR/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
        rm -f "$DIR/$name.pid"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    conf) echo "$CONF" ;;
    *) echo "usage: $0 start|stop|conf" >&2; exit 2 ;;
esac
