#!/usr/bin/env bash
# Installs what is missing, builds the default model's repository if needed, starts Triton on 127.0.0.1, then the
# web UI's gateway (python -m webui) in the background, and prints both addresses.
# Flags go to `python -m serving up` (see --help); each has an environment variable (NER_HTTP_PORT, ...).
# The gateway's settings are environment variables (NER_WEBUI_PORT=8080, NER_WEBUI_HOST=127.0.0.1, ...; see
# webui/README.md); it calls the Triton just started unless NER_TRITON_URL names another.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
for arg in "$@"; do
  case "$arg" in -h|--help) exec .venv/bin/python -m serving up "$@" ;; esac
done
.venv/bin/python -m serving up "$@"

# The web gateway, after Triton.
mkdir -p .run
pid_file=.run/webui.pid
log=.run/webui.log
is_gateway() { [ -n "${1:-}" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "-m webui"; }

if [ -z "${NER_TRITON_URL:-}" ]; then
  protocol="${NER_TRITON_PROTOCOL:-grpc}"
  NER_TRITON_URL=$(.venv/bin/python - "$protocol" <<'PY'
import json, sys
state = json.load(open(".run/triton.json"))
host = state["host"] if state["host"] not in ("0.0.0.0", "::", "") else "127.0.0.1"
print(f"{host}:{state['grpc_port' if sys.argv[1] == 'grpc' else 'http_port']}")
PY
)
  export NER_TRITON_URL NER_TRITON_PROTOCOL="$protocol"
fi

pid=$(cat "$pid_file" 2>/dev/null || true)
if is_gateway "$pid"; then
  echo "the web gateway is already running (pid $pid)"
else
  if ! .venv/bin/python - "${NER_WEBUI_HOST:-127.0.0.1}" "${NER_WEBUI_PORT:-8080}" <<'PY'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host.strip("[]")
try:
    socket.create_connection((host, port), timeout=2).close()
except OSError:
    sys.exit(0)
sys.exit(f"error: another program listens on {host}:{port}; set NER_WEBUI_PORT to a free port")
PY
  then
    exit 1
  fi
  echo "starting the web gateway (Triton at $NER_TRITON_URL); log $log"
  nohup .venv/bin/python -m webui >> "$log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$pid_file"
fi

host="${NER_WEBUI_HOST:-127.0.0.1}"
case "$host" in 0.0.0.0|::|"") probe_host=127.0.0.1 ;; *:*) probe_host="[$host]" ;; *) probe_host="$host" ;; esac
url="http://$probe_host:${NER_WEBUI_PORT:-8080}/"
if ! .venv/bin/python - "$url" "$pid" "${NER_WEBUI_START_TIMEOUT:-60}" <<'PY'
import json, os, sys, time, urllib.error, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline, last = time.monotonic() + timeout, "no answer"
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the web gateway exited")
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as response:
            sys.exit(0)
    except urllib.error.HTTPError as err:
        last = f"{err.code} {err.read().decode(errors='replace')}"
    except OSError as err:
        last = str(err)
    time.sleep(0.3)
sys.exit(f"the web gateway's /healthz did not report Triton ready within {timeout:.0f} s: {last}")
PY
then
  echo "--- $log (last lines) ---" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo
echo "Web UI: $url    (gateway pid $pid, log $log, health ${url}healthz)"
echo "Stop both with: bash scripts/down.sh"
