#!/usr/bin/env bash
# Run N processes of one multi-process JAX command on this machine (the sweep by default):
#
#   scripts/tools/launch_local.sh N [--module dng_jax.train] [flags of the command ...]
#
# e.g. scripts/tools/launch_local.sh 2 --workdir runs/two_processes --config.sweep.seeds=8
#
# Each process gets --coordinator_address=localhost:<a free port> --num_processes=N --process_id=i and
# its own CPU device(s) (set XLA_FLAGS=--xla_force_host_platform_device_count=K for K each); its output
# and error lines are prefixed with "[p<i>] " (both on stdout). When one process fails the others are
# stopped (with their scoring workers). Exit status: the first failing process's, else 0. PYTHON
# (default: python) is the interpreter. See docs/scaling.md.
set -u -o pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N [--module dng_jax.train] [flags ...]   (N: how many processes, >= 1)" >&2
    exit 2
fi
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
    echo "$0 needs bash >= 5.1 (wait -n -p), this is $BASH_VERSION" >&2
    exit 2
fi
n=$1
shift
module=dng_jax.sweep
if [[ "${1:-}" == "--module" ]]; then
    module=${2:?"--module needs a module name, e.g. dng_jax.train"}
    shift 2
fi
python=${PYTHON:-python}
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])') || exit 2

set -m  # each process in a process group of its own: stopping it stops its scoring workers too
pids=()
stop_all() {
    for pid in "${pids[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null
    done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < n; i++)); do
    # a subshell per process (its exit status: the Python process's), its output and errors prefixed
    (
        set -o pipefail
        "$python" -u -m "$module" "$@" --coordinator_address="localhost:$port" --num_processes="$n" \
            --process_id="$i" 2>&1 | sed -u "s/^/[p$i] /"
    ) &
    pids+=($!)
done
set +m  # (no job-status lines from the shell)

status=0
alive=("${pids[@]}")
while ((${#alive[@]} > 0)); do
    wait -n -p done_pid "${alive[@]}"
    rc=$?
    still=()
    for pid in "${alive[@]}"; do
        [[ "$pid" != "$done_pid" ]] && still+=("$pid")
    done
    alive=("${still[@]}")
    if ((rc != 0 && status == 0)); then
        status=$rc
        for ((i = 0; i < n; i++)); do
            if [[ "${pids[i]}" == "$done_pid" ]]; then
                echo "[launch_local] process $i failed (exit status $rc): stopping the others" >&2
            fi
        done
        stop_all
    fi
done
exit "$status"
