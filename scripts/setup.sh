#!/usr/bin/env bash
# Installs what is missing for a profile and nothing else; a second run takes seconds.
#   bash scripts/setup.sh serve   # the server, the exporter and the web gateway
#   bash scripts/setup.sh test    # all of serve, plus the test tools and the browser
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-serve}"
python="${NER_PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: venv support, the libpython the Triton Python-backend stub links, and test-only tools.
packages=()
"$python" -c 'import ensurepip, venv' 2>/dev/null || packages+=("python3-venv")
libdir=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if ! ls "$libdir/libpython$pyver.so.1.0" >/dev/null 2>&1 && ! ldconfig -p | grep -q "libpython$pyver.so.1.0"; then
  packages+=("libpython$pyver")
fi
if [ "$profile" = test ]; then
  while read -r pkg; do
    [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && packages+=("$pkg")
  done < <(grep -v '^#' requirements/debian-test.txt)
fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing Debian packages: ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# Python packages, pinned, into .venv; reinstalled only when a requirements file changes.
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$profile"
wanted=$(cat requirements/*.txt pyproject.toml client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "installing Python packages for '$profile' into .venv (pinned in requirements/$profile.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "requirements/$profile.txt"
  echo "$wanted" > "$stamp"
fi

# The benchmark tools (locust, matplotlib, perf_analyzer 2.51.0): the test suite runs a smoke version of the benchmarks.
if [ "$profile" = test ]; then
  bash perf/setup_tools.sh
fi

# The Triton server from the nvidia-pytriton wheel, laid out in .triton/ with this Python's backend stub.
.venv/bin/python -c 'from pathlib import Path; from serving.layout import ensure_layout; ensure_layout(Path(".triton"))'
