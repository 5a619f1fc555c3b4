#!/usr/bin/env bash
# Installs what is missing for the tests, then runs them (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
