#!/usr/bin/env bash
# Stops what scripts/up.sh started.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m serving down
