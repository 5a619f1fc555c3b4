#!/usr/bin/env bash
# Installs what the benchmark suite needs, idempotently (a second run takes about a second):
#   - the pinned Python packages of requirements/perf.txt into .venv (locust, matplotlib, nvidia-cuda-runtime-cu12, ...)
#   - perf_analyzer 2.51.0, the newest build that runs on Debian 12's glibc: the binary inside the tritonclient==2.51.0
#     manylinux1 wheel, installed with --no-deps into perf/.tools/ (git-ignored; its protobuf<5 pin must not reach .venv)
#   - Debian's libb64-0d, which that binary links (libcudart.so.12 comes from nvidia-cuda-runtime-cu12; no GPU needed)
# Usage: bash perf/setup_tools.sh            (called by scripts/setup.sh test)
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
tools="perf/.tools"
pa_version="2.51.0"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! dpkg -s libb64-0d >/dev/null 2>&1; then
  echo "installing Debian package libb64-0d (perf_analyzer links it)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libb64-0d >/dev/null
fi

[ -x "$python" ] || { echo "no $python: run scripts/setup.sh first" >&2; exit 1; }
stamp=".venv/.installed-perf"
wanted=$(sha256sum requirements/perf.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "installing Python packages for the benchmarks into .venv (pinned in requirements/perf.txt)"
  "$python" -m pip install -q --disable-pip-version-check -r requirements/perf.txt
  echo "$wanted" > "$stamp"
fi

target="$tools/tritonclient-$pa_version"
if [ ! -x "$target/bin/perf_analyzer" ]; then
  echo "installing perf_analyzer $pa_version into $target"
  rm -rf "$target.partial"
  "$python" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$target.partial" "tritonclient==$pa_version"
  rm -rf "$target"
  mv "$target.partial" "$target"
fi

# The check that it really runs: version banner with the libraries found.
"$python" -m perf.perf_analyzer --check
