#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for tests and for trying `--launcher slurm` on a laptop.
#
#   scripts/slurm-local.sh start    # install slurm-wlm + munge if missing (Debian, as root), start it
#   scripts/slurm-local.sh status   # sinfo of the running cluster
#   scripts/slurm-local.sh stop     # stop the daemons (the state folder stays for the logs)
#   scripts/slurm-local.sh env      # the line to source: export SLURM_CONF=...
#
# Everything lives in one folder, $AUTOSEG_SLURM_DIR (default /tmp/autoseg-slurm-$USER): slurm.conf,
# its own munge key and munged socket, the daemons' state, pid and log files. Nothing in /etc is
# changed, so a system SLURM or munge is left alone; the SLURM commands find this cluster through
# SLURM_CONF (print it with `env`). The configuration works in a container without cgroups and
# without systemd: proctrack/linuxproc, task/none, no accounting database. The daemons run as the
# user who starts them, and so do the jobs. Ports: $AUTOSEG_SLURM_PORT (slurmctld, default 6817)
# and the next one (slurmd).
set -euo pipefail

DIR=${AUTOSEG_SLURM_DIR:-/tmp/autoseg-slurm-$(id -un)}
PORT=${AUTOSEG_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
SBIN_PATH=/usr/sbin:/sbin:$PATH

die() { echo "slurm-local: $*" >&2; exit 1; }

install_packages() {
    local missing=()
    PATH=$SBIN_PATH command -v slurmctld >/dev/null || missing+=(slurmctld)
    PATH=$SBIN_PATH command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    PATH=$SBIN_PATH command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them: install SLURM (slurmctld, slurmd, sbatch) and munge"
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run this as root once to install them with apt-get, or: sudo apt-get install ${missing[*]}"
    echo "slurm-local: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
        || die "apt-get could not install ${missing[*]}"
}

pid_running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    local user cpus mem_mb
    user=$(id -un)
    cpus=$(nproc)
    # 90 % of the memory, so that slurmd never finds less than configured
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on localhost without cgroups.
ClusterName=autoseg-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
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
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=600
InactiveLimit=0
PlugStackConfig=$DIR/plugstack.conf
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$DIR/plugstack.conf"
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    local key=$DIR/munge/munge.key
    pid_running "$DIR/munge/munged.pid" && return 0
    if [ ! -f "$key" ]; then
        (umask 077 && dd if=/dev/urandom of="$key" bs=1024 count=1 status=none)
    fi
    chmod 700 "$DIR/munge"
    local force=()
    [ "$(id -u)" = 0 ] && force=(--force)  # munged refuses root without it
    PATH=$SBIN_PATH munged "${force[@]}" --key-file="$key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start: see $DIR/log/munged.log"
}

wait_for_node() {
    local state=""
    for _ in $(seq 1 60); do
        state=$(SLURM_CONF=$CONF sinfo -h -n localhost -o %t 2>/dev/null || true)
        case "$state" in
        idle* | mix* | alloc*) return 0 ;;
        esac
        sleep 0.5
    done
    echo "--- $DIR/log/slurmctld.log" >&2; tail -n 20 "$DIR/log/slurmctld.log" >&2 || true
    echo "--- $DIR/log/slurmd.log" >&2; tail -n 20 "$DIR/log/slurmd.log" >&2 || true
    die "the node did not become idle within 30 s (state: '${state:-none}'); logs above"
}

start() {
    install_packages
    if pid_running "$DIR/slurmctld.pid" && pid_running "$DIR/slurmd.pid"; then
        wait_for_node
        echo "slurm-local: already running; export SLURM_CONF=$CONF"
        return 0
    fi
    stop >/dev/null 2>&1 || true
    write_conf
    start_munge
    PATH=$SBIN_PATH slurmctld -f "$CONF" || die "slurmctld did not start: see $DIR/log/slurmctld.log"
    PATH=$SBIN_PATH slurmd -f "$CONF" -N localhost || die "slurmd did not start: see $DIR/log/slurmd.log"
    wait_for_node
    echo "slurm-local: running ($(nproc) CPUs, partition local); export SLURM_CONF=$CONF"
}

stop_pid() {
    local file=$1 pid
    pid_running "$file" || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    if [ -f "$CONF" ] && pid_running "$DIR/slurmctld.pid"; then
        SLURM_CONF=$CONF scancel --user "$(id -un)" 2>/dev/null || true
    fi
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    stop_pid "$DIR/munge/munged.pid"
    echo "slurm-local: stopped (logs in $DIR/log)"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) SLURM_CONF=$CONF sinfo ;;
env) echo "export SLURM_CONF=$CONF" ;;
*) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
