"""python -m webui — serves the live NER page and its WebSocket gateway to Triton.

Exposes only / (webui/static), /ws and /healthz. Binds 127.0.0.1 by default. Every flag has an environment
variable, shown in brackets.
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

from .gateway import Settings
from .settings import SETTINGS


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    parser = SETTINGS.parser("python -m webui", __doc__, environ=environ)
    args = parser.parse_args(argv)
    try:
        return Settings(**vars(args))
    except ValueError as err:  # settings that disagree (a URL's scheme and --triton-protocol, a bare public bind)
        parser.exit(2, f"{parser.prog}: error: {err}\n")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    import uvicorn

    from .gateway import create_app

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"NER web UI on http://{host}:{settings.port}/ (Triton at {settings.triton_url})", flush=True)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)  # the gateway's own messages go where uvicorn's go
    log_config["loggers"]["webui"] = {"handlers": ["default"], "level": settings.log_level.upper(), "propagate": False}
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                log_config=log_config,
                ws="websockets-sansio", ws_max_size=settings.transport_cap, server_header=False,
                proxy_headers=False, lifespan="on")
    return 0
