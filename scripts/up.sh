#!/usr/bin/env bash
# Installs what is missing, builds the default model's repository if needed, and starts Triton on 127.0.0.1.
# Flags go to `python -m serving up` (see --help); each has an environment variable (NER_HTTP_PORT, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
exec .venv/bin/python -m serving up "$@"
