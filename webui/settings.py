"""The web gateway's settings (``python -m webui``), declared once: its flags, its NER_WEBUI_* variables (Triton's
address: the shared NER_TRITON_URL / NER_TRITON_PROTOCOL), its ``--help`` and the table in webui/README.md.

Cheap to import (no web framework): ``python -m serving up`` reads the gateway's host and port from here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from ner_client.settings import (
    TRITON_PROTOCOL, TRITON_URL, Setting, SettingGroup, comma_list, positive_int,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

SETTINGS = SettingGroup("NER_WEBUI_", (
    Setting("host", "127.0.0.1", "address to bind"),
    Setting("port", 8080, "port to bind", type=int),
    replace(TRITON_URL, name="triton_url"),
    replace(TRITON_PROTOCOL, name="triton_protocol"),
    Setting("models", ("ner", "ner_fp32"), "the ensembles the page may ask for, comma-separated (int8 and fp32 name "
            "them by precision); the first is the default", type=comma_list, metavar="LIST"),
    Setting("allowed_origins", (), "WebSocket Origins accepted besides the gateway's own host, comma-separated "
            "(e.g. https://ner.example.com); * accepts any", type=comma_list, metavar="LIST",
            shown="none: the gateway's own host only"),
    Setting("allowed_hosts", None, "Host header names accepted, comma-separated (guards against DNS rebinding); "
            "required when --host is not a loopback address", type=comma_list, metavar="LIST",
            shown="127.0.0.1,localhost,::1 (+ --host) on loopback"),
    Setting("max_message_bytes", 1024 * 1024, "largest WebSocket message accepted, in UTF-8 bytes; a larger one "
            "gets an error", type=positive_int, metavar="BYTES"),
    Setting("max_text_chars", 100_000, "longest text accepted, in code points (the served model's own "
            "max_text_chars applies too)", type=positive_int, metavar="N"),
    Setting("max_connections", 64, "WebSocket connections at once; one more is told so and closed (code 1013)",
            type=positive_int, metavar="N"),
    Setting("max_pending", 8, "requests in flight per connection; one more gets a 'busy' error", type=positive_int,
            metavar="N"),
    Setting("request_timeout", 30.0, "seconds one request to Triton may take, retries included", type=float,
            metavar="SECONDS"),
    Setting("retries", 3, "tries per request when Triton is unreachable (the SDK's)", type=positive_int, metavar="N"),
    Setting("health_interval", 2.0, "seconds between checks of Triton's readiness (pushed to the pages as status "
            "messages)", type=float, metavar="SECONDS"),
    Setting("log_level", "info", "uvicorn's log level", choices=LOG_LEVELS, metavar="LEVEL"),
), title="webui")


def is_loopback(host: str) -> bool:
    """Whether an address to bind reaches this machine only (a wildcard such as 0.0.0.0 does not)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
