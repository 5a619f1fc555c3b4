#!/usr/bin/env bash
# Stops what scripts/up.sh started: the supervisor, the web gateway and Triton.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m serving down "$@"
