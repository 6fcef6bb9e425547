#!/bin/bash
# The DFT workflow as it was before issue 34 (a git worktree at de39de8), one material at a time, each stopped
# once it has run CAP seconds of wall time (0: no cap), so that a material that would take tens of CPU hours
# costs only what proves the point. Its logs keep the CPU it used; `dft_reproduction.py --before-work` counts a
# stopped material at that CPU, a lower bound on its cost.
#
#   git worktree add /work/before de39de8
#   BEFORE=/work/before bash benchmarks/dft_before_capped.sh mp-1265:0 mp-2542:900 ...
#
# Wall time spent paused (SIGSTOP, to keep another benchmark's timing clean) does not count against the cap. The
# cap is cumulative over invocations (kept in $BEFORE/benchmarks/work/cap-used-ID): a material cut off by the end
# of a session resumes from its step directories with what is left of its cap, and one that has used it all is
# not started again.
# After each material, finished or stopped, dft_before_ledger.py merges what the worktree left (results, CPU per
# step from the logs) into benchmarks/results/dft_reproduction_before_clean.json, the --before file of
# dft_reproduction.py: commit it, since the worktree's logs go with the machine.
# The old script has no FIXED settings: those dft_reproduction.py now always applies (the U of Zn, which, restricted to
# a material's elements, changes ZnO alone) are read from it and passed as --set, which names the old script's
# results file (dft_reproduction.results_name, e.g. ..._hubbard-u-Zn-14.6.json).
set -u
descendants() { local child; for child in $(ps -o pid= --ppid "$1"); do echo "$child"; descendants "$child"; done; }
BEFORE=${BEFORE:-/work/before}
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-$HERE/../.venv/bin/python}
LOG=${LOG:-$BEFORE/benchmarks/work/before_capped.log}
mkdir -p "$(dirname "$LOG")"
read -r -a FIXED_SET < <(cd "$HERE" && "$PYTHON" -c "from dft_reproduction import FIXED
print(' '.join(f'--set {o}' for o in FIXED))") || { echo "cannot read FIXED from $HERE/dft_reproduction.py" >&2; exit 1; }
cd "$BEFORE"
for pair in "$@"; do
  id=${pair%%:*}; cap=${pair##*:}
  used_file="$BEFORE/benchmarks/work/cap-used-$id"
  waited=$(cat "$used_file" 2>/dev/null || echo 0)
  if [ "$cap" != 0 ] && [ "$waited" -ge "$cap" ]; then
    echo "$(date -Is) skip $id: it has used its cap (${waited}s of ${cap}s)" >> "$LOG"; continue
  fi
  for _ in 1 2 3 4 5 6; do pgrep -x 'pw.x|ph.x' >/dev/null || break; sleep 5; done  # the last one's, dying
  if busy=$(pgrep -d, -x 'pw.x|ph.x'); then  # its CPU time would count theirs: wait for nothing, say so
    echo "$(date -Is) not starting $id: QE is already running on this machine (pids $busy)" | tee -a "$LOG" >&2
    exit 1
  fi
  echo "$(date -Is) start $id cap ${cap}s, ${waited}s used before" >> "$LOG"
  setsid env PYTHONPATH="$BEFORE/src" nice "$PYTHON" -W ignore benchmarks/dft_reproduction.py \
    --preset standard --mpi-procs 2 "${FIXED_SET[@]}" --ids "$id" >> "$BEFORE/benchmarks/work/before_$id.log" 2>&1 &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    sleep 5
    case "$(ps -o stat= -p $pid)" in T*) continue;; esac
    waited=$((waited + 5)); echo $waited > "$used_file"
    if [ "$cap" != 0 ] && [ $waited -ge "$cap" ]; then
      # the workflow starts QE in sessions of its own (so that a resumed run can wait for them): stop the whole
      # tree, not only the controller, or its mpirun and pw.x run on beside the next material
      tree=$(descendants $pid); kill -STOP $pid $tree 2>/dev/null; kill -KILL $pid $tree 2>/dev/null
      echo "$(date -Is) stopped $id after ${waited}s (with its QE processes: $(echo $tree | wc -w))" >> "$LOG"; break
    fi
  done
  wait $pid 2>/dev/null
  echo "$(date -Is) end $id" >> "$LOG"
  "$PYTHON" -W ignore "$HERE/dft_before_ledger.py" --before "$BEFORE" --ids "$id" --cap "$cap" \
    ${AFTER_RESULTS:+--after-results "$AFTER_RESULTS"} >> "$LOG" 2>&1
done
