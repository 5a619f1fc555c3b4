#!/usr/bin/env bash
# The container's entry point: `python -m serving up` as the README's serve command runs it (export the default model
# unless the repository holds that export already, then Triton on the container's loopback and the web gateway under
# the supervisor). up returns once both are ready and leaves the supervisor running; this script stays in the
# foreground while the supervisor lives, so that the container ends when it gives up, and stops it on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/python -m serving up "$@"
trap '.venv/bin/python -m serving down; exit 0' TERM INT
supervisor=$(.venv/bin/python -m serving status --json |
             .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin).get("pid", ""))' || true)
while [ -n "$supervisor" ] && kill -0 "$supervisor" 2>/dev/null; do
  sleep 5 & wait $!  # wait returns at once on a signal, so the trap runs without waiting out the sleep
done
echo "the supervisor exited; its log: .venv/bin/python -m serving status" >&2
exit 1
