#!/usr/bin/env bash
# Runs a build command (`make test`: cargo build) while the two installs that only later
# test steps need run beside it: the training venv (scripts/setup-python.sh: torch with
# its CUDA libraries: 5.8 GB installed) and ONNX Runtime's CUDA build
# (scripts/install-ort-cuda.sh, about 1.8 GB). On a fresh machine both spend most of
# their time waiting on the network (PyPI at about 8.5 MB/s here), and the build spends
# its time on the CPU, so overlapping them takes those minutes off a clean CI run. On a
# machine where both are installed they return at once.
#
# Usage: scripts/build-while-downloading.sh COMMAND [ARG...]
# Exits non-zero if the command or either install fails; a failed install's log is
# printed (each one's log: .deps/logs/<script>.log).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -gt 0 ] || { echo "build-while-downloading: no build command" >&2; exit 2; }
mkdir -p .deps/logs
installs=(setup-python install-ort-cuda)
pids=()
for script in "${installs[@]}"; do
  "./scripts/$script.sh" > ".deps/logs/$script.log" 2>&1 &
  pids+=($!)
done
# Interrupted (Ctrl-C, CI timeout): the installs stop with the build.
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM

status=0
"$@" || status=$?

for i in "${!installs[@]}"; do
  script="${installs[$i]}"
  if wait "${pids[$i]}"; then
    tail -n 1 ".deps/logs/$script.log"
  else
    cat ".deps/logs/$script.log" >&2
    echo "build-while-downloading: scripts/$script.sh failed (log above)" >&2
    status=1
  fi
done
exit "$status"
