#!/usr/bin/env bash
# Installs what is missing, builds the default model's repository if needed, and leaves a supervisor running that
# starts Triton on 127.0.0.1 and then the web UI's gateway, restarts them if they fail, and prints both addresses.
# Flags go to `python -m serving up` (see --help); each has an environment variable (NER_SERVE_HTTP_PORT, ...; see
# docs/configuration.md). The gateway's settings are its own (NER_WEBUI_PORT=8080, NER_WEBUI_HOST=127.0.0.1, ...);
# it calls the Triton just started unless NER_TRITON_URL names another.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
exec .venv/bin/python -m serving up "$@"
