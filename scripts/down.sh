#!/usr/bin/env bash
# Stops what scripts/up.sh started: the web gateway, then Triton.
set -euo pipefail
cd "$(dirname "$0")/.."
pid_file=.run/webui.pid
is_gateway() { [ -n "${1:-}" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "-m webui"; }
pid=$(cat "$pid_file" 2>/dev/null || true)
if is_gateway "$pid"; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    is_gateway "$pid" || break
    sleep 0.1
  done
  if is_gateway "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  echo "stopped the web gateway (pid $pid)"
else
  echo "the web gateway is not running"
fi
rm -f "$pid_file"
exec .venv/bin/python -m serving down
