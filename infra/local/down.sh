#!/usr/bin/env bash
# Stops what infra/local/up.sh DIR started, by the PIDs it recorded; safe to run twice.
# The data stays in DIR (up.sh DIR starts the same stack again); rm -rf DIR to forget it.
set -uo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ -d $1 ]] || { echo "down.sh: no stack at $1 (nothing to stop)"; exit 0; }
DIR=$(cd "$1" && pwd)

# The process is ours if its command line still names this stack (guards against reused PIDs).
ours() {
  local pid=$1 marker=$2
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}

stop() {  # stop NAME SIGNAL MARKER [group]: signal the process (or its process group)
  local name=$1 signal=$2 marker=$3 target file=$DIR/pids/$1.pid pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  target=$pid
  [[ ${4:-} == group ]] && target=-$pid
  if kill -0 "$pid" 2>/dev/null && ours "$pid" "$marker"; then
    kill -"$signal" -- "$target" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "down.sh: $name ($pid) still up after 30 s: SIGKILL" >&2
      kill -KILL -- "$target" 2>/dev/null
    fi
    echo "stopped $name ($pid)"
  fi
  rm -f "$file"
}

MLFLOW_PORT=$(sed -n 's/^MLFLOW_PORT=//p' "$DIR/stack.env" 2>/dev/null)
stop mlflow TERM "--port ${MLFLOW_PORT:-?}" group  # the server and its uvicorn worker
stop seaweedfs TERM "$DIR/seaweedfs" group
stop postgres INT "$DIR/postgres"  # SIGINT: PostgreSQL's fast shutdown
exit 0
