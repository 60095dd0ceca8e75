#!/usr/bin/env bash
# Smoke test of the cluster path on this one machine: `ray up` with ray_cluster.local.yaml over ssh to
# 127.0.0.1, `ray submit` of a pipeline script, a check of the run's catalog, and `ray down`.
#
#   scripts/cluster_smoke.sh [PIPELINE [ARG...]]        (or: make cluster-smoke)
#
# PIPELINE defaults to pipelines/dfn.py and ARGs to DEFAULT_ARGS below. In ARGs, {pool} stands for the demo
# pool's folder, {run} for the run folder this script checks afterwards, and {model} for a curate-tiny
# checkpoint with random weights that it writes (this checks the cluster plumbing, not the scores; a real
# DFN comes from training one on the pool's trusted set). Environment: VENV (default
# .venv, must have curate installed), DEMO (default demo; generated when demo/pool is missing), SMOKE_RUN
# (default: a folder in the scratch dir), KEEP=1 to keep the scratch dir.
#
# What it sets up, all in a scratch dir under /tmp, and removes again:
#   * an sshd of its own (openssh-server and rsync are apt-installed when missing) on a free port on
#     127.0.0.1, with a throwaway host key and a throwaway client key authorized for the current user
#     (through its own AuthorizedKeysFile, not ~/.ssh). Ray's ssh options have no port setting, so the
#     patched config reaches it through a ProxyCommand script.
#   * a sandbox HOME for those ssh sessions (sshd's SetEnv HOME): what the launcher writes into "~" (the
#     ~/curate-src copy, ~/ray_bootstrap_*, the ~/.bashrc line from setup_commands) lands there, not in yours.
#     ~/curate-venv there is a link to VENV, so the committed setup_commands find curate installed and
#     install nothing.
#   * Ray isolated from any other Ray on this machine: RAY_TMPDIR points into the scratch dir (the driver
#     finds this cluster there, and `ray.init()` elsewhere never finds it), its ports are free ones, and
#     `ray stop` in those sessions (the committed config's first start command, and what `ray down` runs)
#     stops only the head this script started, instead of every Ray process on the machine.
# The patched config differs from the committed one only in auth, cluster_name and the head's start
# commands (same `ray start --head`, run under --block so that it can be stopped by its process group).
set -euo pipefail

DEFAULT_PIPELINE=pipelines/dfn.py
DEFAULT_ARGS=(--input '{pool}' --run '{run}' --model curate-tiny --pretrained '{model}' --keep-fraction 0.5 --runner ray)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"  # the config's file_mounts paths are relative to the repo root
abspath() { if [[ $1 == /* ]]; then echo "$1"; else echo "$REPO/$1"; fi; }
VENV=$(abspath "${VENV:-.venv}")
DEMO=$(abspath "${DEMO:-demo}")
PIPELINE=${1:-$DEFAULT_PIPELINE}
if (( $# )); then shift; fi
if (( $# )); then ARGS=("$@"); else ARGS=("${DEFAULT_ARGS[@]}"); fi

say() { printf '== %s\n' "$*"; }
die() { printf 'cluster-smoke: %s\n' "$*" >&2; exit 1; }

[[ -f $PIPELINE ]] || die "no pipeline script $PIPELINE (pass another: scripts/cluster_smoke.sh PATH [ARG...])"
[[ -x $VENV/bin/ray && -x $VENV/bin/curate ]] || die "$VENV lacks ray or curate: run make venv first"

# --- tools -------------------------------------------------------------------------------------------
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
if [[ ! -x $SSHD ]] || ! command -v rsync > /dev/null; then
    say "installing openssh-server and rsync"
    SUDO=$([[ $(id -u) == 0 ]] || echo sudo)
    $SUDO apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends openssh-server rsync > /dev/null
    SSHD=$(command -v sshd || echo /usr/sbin/sshd)
fi

# --- scratch dir and cleanup ---------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/curate-smoke-XXXXXX)  # short: Ray's socket paths live under it
SANDBOX=$WORK/home
RUN=${SMOKE_RUN:-$WORK/run}
CONFIG=$WORK/cluster.yaml
CLUSTER=curate-smoke-${WORK##*-}
USER_NAME=$(id -un)
RAY_UP=0

ray_cli() { RAY_TMPDIR=$WORK TMPDIR=$WORK "$VENV/bin/ray" "$@"; }  # launcher state and caches stay in WORK

cleanup() {
    local status=$?
    set +e
    if (( RAY_UP )); then
        say "ray down"
        ray_cli down -y "$CONFIG" 2>&1 | tail -n 3
    fi
    # Whatever ray down left: the head's process group, then this script's sshd (both by their pid).
    local head
    head=$(cat "$SANDBOX/ray-head.pid" 2>/dev/null)
    if [[ -n $head ]] && pgrep -g "$head" > /dev/null; then kill -KILL -- "-$head"; fi
    [[ -f $WORK/sshd.pid ]] && kill "$(cat "$WORK/sshd.pid")"
    if [[ ${KEEP:-0} == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT

# --- sshd on 127.0.0.1 ---------------------------------------------------------------------------------
free_port() { "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SSH_PORT=$(free_port)
mkdir -p "$SANDBOX"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id_ed25519" -C curate-cluster-smoke
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
cat > "$WORK/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
AllowUsers $USER_NAME
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
SetEnv HOME=$SANDBOX
EOF
if [[ $(id -u) == 0 ]]; then mkdir -p /run/sshd; fi  # sshd's privilege-separation dir
"$SSHD" -f "$WORK/sshd_config" -E "$WORK/sshd.log"
# ssh ProxyCommand: one process piping stdin/stdout to that sshd, so that it ends with its ssh client.
cat > "$WORK/proxy" <<EOF
#!$VENV/bin/python
import os, selectors, socket, sys
sock = socket.create_connection(("127.0.0.1", $SSH_PORT))
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if data:
                sock.sendall(data)
            else:
                sock.shutdown(socket.SHUT_WR)
                sel.unregister(0)
        else:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            while data:
                data = data[os.write(1, data):]
EOF
chmod +x "$WORK/proxy"
ssh_opts=(-i "$WORK/id_ed25519" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o ProxyCommand="$WORK/proxy")
for _ in $(seq 20); do
    if ssh "${ssh_opts[@]}" "$USER_NAME@127.0.0.1" true 2> /dev/null; then break; fi
    sleep 0.5
done
ssh "${ssh_opts[@]}" "$USER_NAME@127.0.0.1" 'test "$HOME" = '"$SANDBOX" || die "ssh to 127.0.0.1:$SSH_PORT failed; see $WORK/sshd.log"
say "sshd on 127.0.0.1:$SSH_PORT as $USER_NAME, sandbox HOME $SANDBOX"

# --- the sandbox HOME and the patched config -----------------------------------------------------------
cat > "$WORK/stop-ray" <<EOF
#!/usr/bin/env bash
# \`ray stop\` for this smoke test: stops the head it started (a process group of its own), nothing else.
set -euo pipefail
pidfile=$SANDBOX/ray-head.pid
[[ -f \$pidfile ]] || exit 0
pid=\$(cat "\$pidfile")
if kill -0 "\$pid" 2> /dev/null; then
    kill -TERM "\$pid"  # ray start --block drains the node and stops its processes
    for _ in \$(seq 60); do kill -0 "\$pid" 2> /dev/null || break; sleep 1; done
fi
if pgrep -g "\$pid" > /dev/null; then kill -KILL -- "-\$pid"; fi
rm -f "\$pidfile"
echo "stopped the smoke test's Ray head (process group \$pid)"
EOF
chmod +x "$WORK/stop-ray"
cat > "$SANDBOX/.bashrc" <<EOF
# Sandbox HOME of scripts/cluster_smoke.sh. Ray state lives under RAY_TMPDIR, where only these sessions look.
export RAY_TMPDIR=$WORK
ray() { if [ "\${1-}" = stop ]; then "$WORK/stop-ray"; else command ray "\$@"; fi; }
EOF
ln -s "$VENV" "$SANDBOX/curate-venv"

GCS_PORT=$(free_port)
AGENT_PORT=$(free_port)
# No 30 s drain on SIGTERM at ray down: nothing here needs a graceful handover.
START="env RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 ray start --head --block --port=$GCS_PORT"
START+=" --dashboard-agent-listen-port=$AGENT_PORT"
START+=" --include-dashboard=false --disable-usage-stats"
START+=" --autoscaling-config=~/ray_bootstrap_config.yaml"
"$VENV/bin/python" - "$REPO/ray_cluster.local.yaml" "$CONFIG" <<EOF
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1]))
config["cluster_name"] = "$CLUSTER"
config["auth"] = {"ssh_user": "$USER_NAME", "ssh_private_key": "$WORK/id_ed25519", "ssh_proxy_command": "$WORK/proxy"}
config["head_start_ray_commands"] = [
    "ray stop",
    "setsid -f bash -c 'echo \$\$ > ~/ray-head.pid; exec $START > ~/ray-head.log 2>&1 < /dev/null'",
    # Done when a plain ray start would have returned: after it wrote ray_current_cluster, which the
    # driver's ray.init() reads to find the cluster (GCS answering earlier is not enough).
    "for _ in \$(seq 120); do grep -qs 'block forever' ~/ray-head.log && exit 0; "
    "kill -0 \$(cat ~/ray-head.pid) 2> /dev/null || break; sleep 1; done; cat ~/ray-head.log; exit 1",
]
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
EOF

# --- demo pool and model -----------------------------------------------------------------------------
if [[ ! -d $DEMO/pool ]]; then
    say "generating the demo pool in $DEMO"
    "$VENV/bin/curate" synth --out "$DEMO" > /dev/null
fi
MODEL=$WORK/curate-tiny-random.pt
if [[ ${ARGS[*]} == *"{model}"* ]]; then
    "$VENV/bin/python" - "$MODEL" <<'EOF'
import sys

import open_clip
import torch

from curate.models.loading import register_configs

register_configs()
torch.manual_seed(0)
torch.save(open_clip.create_model("curate-tiny").state_dict(), sys.argv[1])
EOF
fi
RESOLVED=()
for arg in "${ARGS[@]}"; do
    arg=${arg//\{pool\}/$DEMO/pool}
    arg=${arg//\{model\}/$MODEL}
    RESOLVED+=("${arg//\{run\}/$RUN}")
done

# --- up, submit ----------------------------------------------------------------------------------------
say "ray up ($CLUSTER, GCS port $GCS_PORT)"
RAY_UP=1
ray_cli up -y --disable-usage-stats --no-config-cache "$CONFIG"

# ray submit joins its arguments with spaces and the head's shell parses them again: quote them once more.
QUOTED=()
for arg in "${RESOLVED[@]}"; do QUOTED+=("$(printf '%q' "$arg")"); done
say "ray submit $PIPELINE -- ${RESOLVED[*]}"
ray_cli submit --no-config-cache "$CONFIG" "$PIPELINE" -- "${QUOTED[@]}"

# --- checks ------------------------------------------------------------------------------------------
say "accounting"
"$VENV/bin/curate" sql "$RUN" --saved accounting
say "stage counts"
"$VENV/bin/curate" sql "$RUN" --saved stage_counts
"$VENV/bin/python" - "$("$VENV/bin/curate" sql "$RUN" --saved accounting --format json)" \
    "$("$VENV/bin/curate" sql "$RUN" --saved stage_counts --format json)" <<'EOF'
import json
import sys

(row,), stages = json.loads(sys.argv[1]), json.loads(sys.argv[2])
read, kept, quarantined = row["read"], row["kept"], row["quarantined"]
assert read == kept + quarantined, f"read {read} != kept {kept} + quarantined {quarantined}"
assert kept > 0, "nothing kept"
print(f"ok: read {read} = kept {kept} + quarantined {quarantined}")
for stage in stages:  # each selection stage's keep flag covers every ingested sample
    total = stage["kept"] + stage["dropped"] + stage["unscored"]
    assert total == kept and stage["kept"] > 0, f"{stage} does not add up to {kept} samples, or keeps none"
    print(f"ok: {stage['stage']}: kept {stage['kept']} + dropped {stage['dropped']} + unscored {stage['unscored']}")
EOF

# The driver ran against the cluster that ray up started, not a Ray of its own: its log is in that head's
# session, and no other Ray session exists under RAY_TMPDIR.
HEAD_PID=$(cat "$SANDBOX/ray-head.pid")
shopt -s nullglob
sessions=("$WORK"/ray/session_2*)
drivers=("$WORK"/ray/session_*_"$HEAD_PID"/logs/python-core-driver-*)
(( ${#sessions[@]} == 1 && ${#drivers[@]} >= 1 )) || die "the job did not run on the launched cluster: ${sessions[*]}"
say "ok: ${#drivers[@]} driver(s) connected to the head started by ray up (pid $HEAD_PID)"
say "cluster smoke passed"
