#!/usr/bin/env bash
# scripts/local-slurm.sh — a real SLURM cluster of one or more nodes on localhost, for swinctl's tests.
#
#   scripts/local-slurm.sh start  DIR   install Debian's slurm/munge/mariadb packages if missing,
#                                       write every config/state/log/pid/socket under DIR, start
#                                       munged, mariadbd, slurmdbd, slurmctld and one slurmd per
#                                       node (a no-op success when already running)
#   scripts/local-slurm.sh stop   DIR   stop everything started from DIR (by its pid files) and wait
#   scripts/local-slurm.sh status DIR   exit 0 when every daemon is up and every node answers
#   scripts/local-slurm.sh env    DIR   print `export SLURM_CONF=...` for `eval "$(... env DIR)"`
#
# Exit codes: 0 ok, 1 a daemon failed to start (its log tail is printed) or a node's name could
# not be made to resolve, 2 not root, 3 packages missing and no apt-get, 4 apt-get failed,
# 64 usage (or a bad SWINCTL_SLURM_NODES).
# DIR defaults to $SWINCTL_SLURM_DIR, then /tmp/swinctl-slurm.  Needs root (the daemons run as
# root, SlurmUser=root).  Ports: SWINCTL_SLURM_PORT_BASE (default 6817) gives slurmctld=BASE,
# slurmd=BASE+1 (the first node), slurmdbd=BASE+2, node K>1's slurmd BASE+1+K; mariadb listens on
# a unix socket only.
#
# SWINCTL_SLURM_NODES (default 2): how many compute nodes. 1 is one node named after the host, as
# before; N>1 runs N slurmd daemons on this host (`slurmd -N NAME`, each with its own port, spool,
# log and pid file), nodes HOST-1..HOST-N, so multi-node jobs (sbatch --nodes 2) really span
# nodes: SLURM_JOB_NODELIST, SLURMD_NODENAME and per-node task counts are SLURM's own. Their
# names must resolve, as on a real cluster (MASTER_ADDR is the node list's first name): a name
# that does not is added to /etc/hosts as 127.0.0.1 (once, tagged `# swinctl local-slurm`; stop
# leaves it).
# Knobs: SWINCTL_SLURM_CPUS (CPUs declared for each node, default max(8, real); the node is
# oversubscribed on purpose so several tiny test jobs run at once on a 2-core machine);
# SWINCTL_SLURM_CRED_EXPIRE (AuthInfo cred_expire, default 10 s: a requeued job becomes eligible
# again cred_expire+1 s after the requeue instead of Slurm's default 120 s);
# SWINCTL_SLURM_GPUS (default 4, 0 for none: each node advertises that many *fake* `gpu` GRES,
# backed by /dev/null clones under DIR/dev, so jobs asking --gpus-per-node/--gres=gpu:N are
# accepted and scheduled; Slurm sets CUDA_VISIBLE_DEVICES=0,1.. but there is no GPU behind it).
#
# Note: a fresh cluster (fresh DIR) restarts job ids at 1 — never reuse a submitit folder
# across clusters.
set -euo pipefail

PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
CLUSTER_NAME=swinctl
say() { printf '[local-slurm] %s\n' "$*" >&2; }
die() { local rc=$1; shift; printf '[local-slurm] error: %s\n' "$*" >&2; exit "$rc"; }

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 64
}

CMD=${1:-}
[[ -n $CMD ]] || usage
DIR=${2:-${SWINCTL_SLURM_DIR:-/tmp/swinctl-slurm}}
case $DIR in /*) ;; *) DIR=$(pwd)/$DIR ;; esac
PORT_BASE=${SWINCTL_SLURM_PORT_BASE:-6817}
CRED_EXPIRE=${SWINCTL_SLURM_CRED_EXPIRE:-10}
FAKE_GPUS=${SWINCTL_SLURM_GPUS:-4}
NODES=${SWINCTL_SLURM_NODES:-2}
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die 64 "SWINCTL_SLURM_NODES must be a positive integer, not '$NODES'"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))

ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
MUNGE_SOCKDIR=$RUN/munge            # world-executable (munged insists)
MUNGE_SOCKET=$MUNGE_SOCKDIR/munge.socket.2
MUNGE_KEYDIR=$DIR/munge-key         # 0700, key separate from the socket directory
MUNGE_KEY=$MUNGE_KEYDIR/munge.key
DB_DATADIR=$DIR/mysql
DB_SOCKET=$RUN/mysqld.sock
SLURM_CONF_FILE=$ETC/slurm.conf

pidfile() { echo "$RUN/$1.pid"; }

node_names() {  # the compute nodes, one a line: the host itself, or HOST-1..HOST-N
    local k
    if ((NODES == 1)); then echo "$NODE"; else for ((k = 1; k <= NODES; k++)); do echo "$NODE-$k"; done; fi
}

slurmd_id() {  # slurmd_id NODE: the name of that node's slurmd pid file (RUN/ID.pid)
    if ((NODES == 1)); then echo slurmd; else echo "slurmd-$1"; fi
}

slurmd_log() { echo "$LOG/$(slurmd_id "$1").log"; }

slurmd_port() {  # slurmd_port K (1-based): BASE+1 for the first node, BASE+1+K after slurmdbd's BASE+2
    if (($1 == 1)); then echo $((PORT_BASE + 1)); else echo $((PORT_BASE + 1 + $1)); fi
}

# every slurmd pid file under RUN, whatever the node count it was started with (stop must find
# the daemons of a cluster started with other knobs)
slurmd_ids() {
    local f
    for f in "$RUN"/slurmd.pid "$RUN"/slurmd-*.pid; do
        [[ -e $f ]] && basename "$f" .pid
    done
    return 0
}

# pid of a daemon from its pid file (RUN/NAME.pid) if that process is alive and is that daemon
# (its command starts with COMM, default NAME; a stale pid file whose pid was reused by something
# else, or a zombie, does not count), else nothing (exit 1)
alive_pid() {
    local f pid comm
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    pid=${pid//[[:space:]]/}
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "${2:-$1}"* ]] || return 1
    local stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }                    # after "pid (comm) ": the state letter first
    [[ ${stat:0:1} != [ZX] ]] || return 1  # a killed daemon can linger as a zombie for a while
    echo "$pid"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die 2 "needs root: the local cluster runs munged/mariadbd/slurm daemons as root (SlurmUser=root) and may apt-get install them; rerun as root (sudo $0 $CMD $DIR)"
}

install_packages() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die 3 "packages missing (${missing[*]}) and apt-get is not available to install them"
    say "installing ${missing[*]} (apt-get; ~20-40 s)"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    # Package installs must not try to start services (no systemd here anyway).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"${TMPDIR:-/tmp}/local-slurm-apt.log" 2>&1 || rc=$?
    [[ $created_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || { tail -20 "${TMPDIR:-/tmp}/local-slurm-apt.log" >&2; die 4 "apt-get install ${missing[*]} failed (log: ${TMPDIR:-/tmp}/local-slurm-apt.log)"; }
    say "installed in $((SECONDS - t0)) s"
}

node_line() {
    # `slurmd -C` describes the real machine; declare more CPUs than physical (config_overrides)
    # so several small jobs can share 2 cores.
    local c cpus real_cpus mem
    c=$(slurmd -C 2>/dev/null | head -1)
    real_cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$c")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$c")
    [[ -n $real_cpus ]] || real_cpus=$(nproc)
    [[ -n $mem ]] || mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))
    cpus=${SWINCTL_SLURM_CPUS:-$((real_cpus > 8 ? real_cpus : 8))}
    # Declare a plain 1-socket topology with the oversubscribed count; memory is what the machine has.
    # (Each of several nodes declares as much: a job that fits one node here fits any of them.)
    local gres="" name k=0 port=""
    ((FAKE_GPUS > 0)) && gres=" Gres=gpu:$FAKE_GPUS"
    for name in $(node_names); do
        k=$((k + 1))
        ((NODES > 1)) && port=" Port=$(slurmd_port $k)"
        echo "NodeName=$name NodeAddr=127.0.0.1 NodeHostname=$NODE$port CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem$gres State=UNKNOWN"
    done
}

# A node's name must resolve where its jobs run, as on a real cluster: torch's and MMEngine's
# rendezvous (MASTER_ADDR) is the node list's first name. Names that do not are added to
# /etc/hosts, appended (a rename could not replace a bind-mounted /etc/hosts, as in containers).
resolve_nodes() {
    local name
    ((NODES > 1)) || return 0  # (one node keeps the host's own name, as before)
    for name in $(node_names); do
        getent hosts "$name" >/dev/null && continue
        # (a last line without its newline would swallow ours)
        [[ ! -s /etc/hosts || -z $(tail -c1 /etc/hosts) ]] || echo >>/etc/hosts
        say "adding $name to /etc/hosts (127.0.0.1), as a real cluster's DNS would name the node"
        printf '127.0.0.1 %s  # swinctl local-slurm\n' "$name" >>/etc/hosts \
            || die 1 "could not add node $name to /etc/hosts; use SWINCTL_SLURM_NODES=1, or make $name resolve"
        getent hosts "$name" >/dev/null || die 1 "node name $name does not resolve even after adding it to /etc/hosts"
    done
}

write_configs() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/spool/slurmctld" "$DB_DATADIR"
    local name
    for name in $(node_names); do mkdir -p "$DIR/spool/$(slurmd_id "$name")"; done
    chmod 755 "$DIR" "$RUN" "$ETC"
    local ctld_host="$NODE"
    cat >"$SLURM_CONF_FILE" <<EOF
# generated by scripts/local-slurm.sh — $NODES-node test cluster, everything under $DIR
ClusterName=$CLUSTER_NAME
SlurmctldHost=$ctld_host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=$DIR/spool/slurmctld
SlurmdSpoolDir=$DIR/spool/$(slurmd_id %n)
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile "$(slurmd_id %n)")
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$(slurmd_log %n)
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
# scheduling: start jobs immediately (a requeued job, once its BeginTime passes, waits for the
# periodic pass: sched_interval/bf_interval, 60/30 s by default); jobs share the oversubscribed CPUs
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# requeue / preemption / time limits enforced promptly
JobRequeue=1
KillWait=5
OverTimeLimit=0
InactiveLimit=0
MinJobAge=30
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
Waittime=0
# accounting through slurmdbd (sacct, which submitit uses for job state, needs it)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
$( ((FAKE_GPUS > 0)) && printf '%s\n' 'GresTypes=gpu' 'AccountingStorageTRES=gres/gpu')

$(node_line)
PartitionName=debug Nodes=$(node_names | paste -sd,) Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=long Nodes=$(node_names | paste -sd,) Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    if ((FAKE_GPUS > 0)); then
        # slurmd drops file-less GPUs, and wants character devices: clones of /dev/null
        mkdir -p "$DIR/dev"
        local i
        for ((i = 0; i < FAKE_GPUS; i++)); do
            [[ -c $DIR/dev/fakegpu$i ]] || { rm -f "$DIR/dev/fakegpu$i"; mknod -m 666 "$DIR/dev/fakegpu$i" c 1 3 2>/dev/null || touch "$DIR/dev/fakegpu$i"; }
        done
        # (every node's slurmd reads the same fake devices)
        echo "NodeName=$(node_names | paste -sd,) Name=gpu File=$DIR/dev/fakegpu[0-$((FAKE_GPUS - 1))]" >"$ETC/gres.conf"
    else
        : >"$ETC/gres.conf"
    fi
    chmod 644 "$ETC/gres.conf"
    cat >"$ETC/slurmdbd.conf" <<EOF
# generated by scripts/local-slurm.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
    chmod 644 "$SLURM_CONF_FILE"
    # no cgroup.conf: proctrack/linuxproc + task/none load no cgroup plugin
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s until it succeeds
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "gave up waiting for $what after $limit s"
            return 1
        fi
        sleep 0.1
    done
}

fail_with_log() {  # fail_with_log NAME LOGFILE
    say "$1 did not come up; last lines of $2:"
    tail -15 "$2" >&2 2>/dev/null || true
    die 1 "$1 failed to start (full log: $2)"
}

start_munge() {
    if alive_pid munged >/dev/null; then return 0; fi
    mkdir -p "$MUNGE_KEYDIR" "$MUNGE_SOCKDIR" "$DIR/munge-state"
    chmod 700 "$MUNGE_KEYDIR" "$DIR/munge-state"
    chmod 755 "$MUNGE_SOCKDIR"
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force >/dev/null
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chmod 400 "$MUNGE_KEY"
    say "starting munged"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    munged --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$(pidfile munged)" \
        --log-file="$LOG/munged.log" --seed-file="$DIR/munge-state/munged.seed" --force \
        >>"$LOG/munged.log" 2>&1 9>&- || fail_with_log munged "$LOG/munged.log"
    wait_for 10 munged test -S "$MUNGE_SOCKET" || fail_with_log munged "$LOG/munged.log"
}

mysql_cli() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_mariadb() {
    if alive_pid mariadbd >/dev/null; then return 0; fi
    if [[ ! -d $DB_DATADIR/mysql ]]; then
        say "initialising mariadb datadir"
        mariadb-install-db --no-defaults --datadir="$DB_DATADIR" --user=root --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 9>&- \
            || fail_with_log mariadb-install-db "$LOG/mariadb-install.log"
    fi
    say "starting mariadbd"
    rm -f "$DB_SOCKET"
    setsid mariadbd --no-defaults --datadir="$DB_DATADIR" --socket="$DB_SOCKET" \
        --pid-file="$(pidfile mariadbd)" --log-error="$LOG/mariadbd.log" --user=root \
        --skip-networking --skip-log-bin --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --innodb-log-file-size=48M --innodb-flush-log-at-trx-commit=2 \
        </dev/null >>"$LOG/mariadbd.log" 2>&1 9>&- &
    wait_for 60 mariadbd mysql_cli -e 'select 1' || fail_with_log mariadbd "$LOG/mariadbd.log"
    wait_for 5 mariadbd-pid alive_pid mariadbd || fail_with_log mariadbd "$LOG/mariadbd.log"
}

start_slurmdbd() {
    if alive_pid slurmdbd >/dev/null; then return 0; fi
    say "starting slurmdbd"
    # slurmdbd's mysql client reaches our mariadb through its unix socket (StorageHost=localhost)
    # (slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF)
    MYSQL_UNIX_PORT=$DB_SOCKET slurmdbd >>"$LOG/slurmdbd.log" 2>&1 9>&- \
        || fail_with_log slurmdbd "$LOG/slurmdbd.log"
    wait_for 30 slurmdbd alive_pid slurmdbd || fail_with_log slurmdbd "$LOG/slurmdbd.log"
    # the cluster must exist in the accounting db before slurmctld registers
    wait_for 30 slurmdbd-answers sacctmgr -n list cluster || fail_with_log slurmdbd "$LOG/slurmdbd.log"
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
        say "adding cluster $CLUSTER_NAME to the accounting db"
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
    fi
}

start_slurmctld() {
    if alive_pid slurmctld >/dev/null; then return 0; fi
    say "starting slurmctld"
    slurmctld -f "$SLURM_CONF_FILE" >>"$LOG/slurmctld.log" 2>&1 9>&- || fail_with_log slurmctld "$LOG/slurmctld.log"
    wait_for 30 slurmctld scontrol ping || fail_with_log slurmctld "$LOG/slurmctld.log"
}

start_slurmd() {  # start_slurmd NODE: that node's slurmd, until the node is registered and ready
    local node=$1 id log
    id=$(slurmd_id "$node")
    log=$(slurmd_log "$node")
    if ! alive_pid "$id" slurmd >/dev/null; then
        say "starting slurmd for node $node"
        slurmd -f "$SLURM_CONF_FILE" -N "$node" >>"$log" 2>&1 9>&- || fail_with_log "slurmd ($node)" "$log"
    fi
    wait_for 30 "node $node to register" node_registered "$node" || fail_with_log "slurmd ($node)" "$log"
    if ! node_ready "$node"; then
        # a drain/down left in slurmctld's saved state (e.g. from an earlier config) would keep
        # jobs pending forever on this private cluster: resume the node
        say "node $node is $(node_state "$node") ($(sinfo -h -n "$node" -o '%E' | head -1)); resuming it"
        scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
    fi
    wait_for 30 "node $node to be idle" node_ready "$node" || {
        say "node $node stays $(node_state "$node"): $(sinfo -h -n "$node" -o '%E' | head -1)"
        fail_with_log "slurmd ($node)" "$log"
    }
}

node_state() { sinfo -h -n "$1" -o '%T' 2>/dev/null | head -1; }

node_registered() {  # node_registered NODE: its slurmd has talked to slurmctld since it started
    local st
    st=$(node_state "$1")
    [[ -n $st && $st != unknown* && $st != *'*' ]] || return 1
    [[ $(scontrol show node "$1" 2>/dev/null) =~ SlurmdStartTime=([^[:space:]]+) ]] || return 1
    [[ ${BASH_REMATCH[1]} != None ]]
}

node_ready() {  # node_ready NODE
    case $(node_state "$1") in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

nodes_ready() {
    local node
    for node in $(node_names); do node_ready "$node" || return 1; done
}

daemons_up() {
    local d node
    for d in munged mariadbd slurmdbd slurmctld; do alive_pid "$d" >/dev/null || return 1; done
    for node in $(node_names); do alive_pid "$(slurmd_id "$node")" slurmd >/dev/null || return 1; done
}

cmd_status() {
    local d pid node ok=0
    for d in munged mariadbd slurmdbd slurmctld; do
        if pid=$(alive_pid "$d"); then
            say "$d: running (pid $pid)"
        else
            say "$d: not running"
            ok=1
        fi
    done
    for node in $(node_names); do
        if pid=$(alive_pid "$(slurmd_id "$node")" slurmd); then
            say "slurmd ($node): running (pid $pid)"
        else
            say "slurmd ($node): not running"
            ok=1
        fi
    done
    if [[ $ok -eq 0 ]]; then
        for node in $(node_names); do
            if node_ready "$node"; then
                say "node $node: $(node_state "$node")"
            else
                say "node $node: not ready"
                ok=1
            fi
        done
    fi
    return $ok
}

fingerprint() {  # what the generated config depends on: this script, the knobs, the host
    { cat "$0"; echo "$NODE $PORT_BASE $CRED_EXPIRE $FAKE_GPUS ${SWINCTL_SLURM_CPUS:-} $NODES"; } | sha256sum | cut -c1-16
}

cmd_start() {
    need_root
    install_packages
    resolve_nodes
    local fp
    fp=$(fingerprint)
    if daemons_up && nodes_ready; then
        if [[ $(cat "$DIR/.fingerprint" 2>/dev/null) == "$fp" ]]; then
            say "already running under $DIR"
            return 0
        fi
        say "running, but started by another version of this script or other knobs: restarting"
        cmd_stop
    elif alive_pid slurmctld >/dev/null && [[ $(cat "$DIR/.fingerprint" 2>/dev/null) != "$fp" ]]; then
        say "partly running with an outdated config: restarting"
        cmd_stop
    fi
    local t0
    t0=$(date +%s.%N)
    # (re)write the config only when slurmctld is down, so a running cluster is never disturbed
    alive_pid slurmctld >/dev/null || write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    local node
    for node in $(node_names); do start_slurmd "$node"; done
    echo "$fp" >"$DIR/.fingerprint"
    say "cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; use: eval \"\$($0 env $DIR)\""
}

stop_daemons() {  # stop_daemons NAME...: TERM them all by pid file, wait up to 20 s, then KILL
    local name pid i pids=() names=()
    for name in "$@"; do
        if pid=$(alive_pid "$name" "${name%%-*}"); then  # (slurmd-NODE is a slurmd)
            say "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        fi
    done
    for ((i = 0; i < ${#pids[@]}; i++)); do
        local deadline=$((SECONDS + 20))
        while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "${pids[i]}" 2>/dev/null; then
            say "${names[i]} did not exit in 20 s; killing it"
            kill -KILL "${pids[i]}" 2>/dev/null || true
            while kill -0 "${pids[i]}" 2>/dev/null; do sleep 0.1; done
        fi
    done
    for name in "$@"; do rm -f "$(pidfile "$name")"; done
}

no_live_jobs() {  # nothing pending, running, completing, suspended or configuring
    [[ -z $(squeue -h -t PD,R,CG,S,CF,RQ,SE,ST -o %i 2>/dev/null | head -1) ]]
}

cmd_stop() {
    need_root
    [[ -d $DIR ]] || { say "nothing under $DIR"; return 0; }
    # reverse order of start; slurmstepd children of slurmd die with their jobs
    if alive_pid slurmctld >/dev/null && [[ -f $SLURM_CONF_FILE ]]; then
        # cancel every job first so no slurmstepd outlives the cluster, and wait for them to go
        if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
            say "cancelling $(squeue -h -o %i | wc -l) job(s)"
            scancel --quiet --full --user=root 2>/dev/null || true
            wait_for 20 jobs-gone no_live_jobs \
                || say "jobs still listed after 20 s: $(squeue -h -o '%i %T' | tr '\n' ' ')"
        fi
    fi
    # reverse order of start; slurmctld flushes to slurmdbd, which flushes to mariadb
    # every slurmd whose pid file is here, also those of a cluster started with another node count
    # shellcheck disable=SC2046
    stop_daemons $(slurmd_ids) slurmctld
    stop_daemons slurmdbd
    stop_daemons mariadbd munged
    say "stopped"
}

cmd_env() {
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_FILE"
}

export SLURM_CONF=$SLURM_CONF_FILE
NODE=${SWINCTL_SLURM_NODE:-$(hostname -s)}

lock_dir() {  # serialise start/stop on one DIR (e.g. parallel test workers)
    mkdir -p "$DIR"
    # (daemons are started with 9>&- so they do not inherit, and hold, the lock)
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die 1 "could not lock $DIR/.lock within 300 s"
}

case $CMD in
    start) need_root && lock_dir && cmd_start ;;
    stop)
        need_root
        if [[ -d $DIR ]]; then lock_dir; fi
        cmd_stop
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
