# Sourced by .ci/services.sh: a single-node SLURM cluster on loopback (munged, slurmctld, slurmd) for the SLURM tests.
# Settings from ../shared/guides/slurm-single-node.md. Exports SLURM_CONF and TANSAKU_TEST_SLURM=1; the
# daemons are stopped by their PIDs on exit (stop_slurm).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
    echo "installing SLURM and munge with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
fi
SLURM_DIR="$(mktemp -d /tmp/tansaku-slurm.XXXXXX)"
for port in 6817 6818; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use: another SLURM cluster is running here" >&2
        return 1
    fi
done
mkdir -p "$SLURM_DIR"/{state,spool,log} /run/munge
chown munge:munge /run/munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
node="$(slurmd -C | head -1)"
cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")"
boards="$(sed -n 's/.* Boards=\([0-9]*\).*/\1/p' <<<"$node")"
sockets="$(sed -n 's/.* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$node")"
cores="$(sed -n 's/.* CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$node")"
threads="$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$node")"
memory="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")"
cat >"$SLURM_DIR/slurm.conf" <<CONF
ClusterName=tansaku-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
ReturnToService=2
MinJobAge=300
KillWait=5
OverTimeLimit=0
MailProg=/bin/true
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$((memory * 95 / 100))
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$SLURM_DIR/slurm.conf"
setpriv --reuid=munge --regid=munge --init-groups munged -F >"$SLURM_DIR/log/munged.log" 2>&1 &
MUNGED_PID=$!
for _ in $(seq 50); do timeout 5 munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >"$SLURM_DIR/log/slurmctld.out" 2>&1 &
SLURMCTLD_PID=$!
slurmd -D -N localhost -f "$SLURM_CONF" >"$SLURM_DIR/log/slurmd.out" 2>&1 &
SLURMD_PID=$!
stop_slurm() {
    jobs_left="$(timeout 5 squeue -h -o %i 2>/dev/null || true)"
    if [ -n "$jobs_left" ]; then timeout 5 scancel $jobs_left 2>/dev/null || true; sleep 1; fi
    kill "$SLURMD_PID" "$SLURMCTLD_PID" "$MUNGED_PID" 2>/dev/null
    for pid in "$SLURMD_PID" "$SLURMCTLD_PID" "$MUNGED_PID"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$SLURM_DIR"
}
for _ in $(seq 100); do
    [ "$(timeout 5 sinfo -h -N -o %t 2>/dev/null)" = "idle" ] && break
    sleep 0.2
done
if [ "$(timeout 5 sinfo -h -N -o %t 2>/dev/null)" != "idle" ]; then
    echo "SLURM did not come up; logs in $SLURM_DIR/log" >&2
    tail -5 "$SLURM_DIR"/log/* >&2
    stop_slurm
    return 1
fi
export TANSAKU_TEST_SLURM=1
echo "SLURM $(sinfo --version | awk '{print $2}') single-node cluster up (slurmctld $SLURMCTLD_PID, slurmd $SLURMD_PID)"
