"""The compose health check of the serving container: Triton ready, one inference through the `ner` ensemble with a
text that changes every time (a dead Python-backend stub leaves readiness at 200, and no response cache may answer
it), and the gateway's /healthz. Exit 0 when all three answer, else 1 with the failure."""

from __future__ import annotations

import json
import sys
import time
import urllib.request

from serving.cli import SETTINGS as SERVE
from webui.settings import SETTINGS as WEBUI


def main() -> int:
    triton = SERVE.parser("healthcheck", names=("http_port",)).parse_args([])
    gateway = WEBUI.parser("healthcheck", names=("port",)).parse_args([])
    text = f"health {time.time_ns()}"
    body = json.dumps({"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1, 1], "data": [text]}]}).encode()
    calls = [urllib.request.Request(f"http://127.0.0.1:{triton.http_port}/v2/health/ready"),
             urllib.request.Request(f"http://127.0.0.1:{triton.http_port}/v2/models/ner/infer", data=body,
                                    headers={"Content-Type": "application/json"}),
             urllib.request.Request(f"http://127.0.0.1:{gateway.port}/healthz")]
    for call in calls:
        try:
            with urllib.request.urlopen(call, timeout=3) as answer:
                answer.read()
        except OSError as err:
            print(f"{call.full_url}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
