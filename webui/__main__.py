"""python -m webui — serves the live NER page and its WebSocket gateway to Triton.

Exposes only / (webui/static), /ws and /healthz. Binds 127.0.0.1 by default. Every flag has an environment
variable, shown in brackets.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

from .gateway import SETTINGS, Settings, settings_from


def parse_args(argv=None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m webui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for s in SETTINGS:
        raw = os.environ.get(s.env)
        default = s.kind(raw) if raw is not None else s.default
        parser.add_argument(s.flag, dest=s.name, type=s.kind, default=default,
                            help=f"{s.help} [{s.env}; default: {s.default_text()}]")
    try:
        return settings_from(parser.parse_args(argv))
    except ValueError as err:
        parser.error(str(err))


def main(argv=None) -> int:
    settings = parse_args(argv)
    import uvicorn

    from .gateway import create_app

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"NER web UI on http://{host}:{settings.port}/ (Triton {settings.triton_protocol} at "
          f"{settings.triton_url})", flush=True)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)  # the gateway's own messages go where uvicorn's go
    log_config["loggers"]["webui"] = {"handlers": ["default"], "level": settings.log_level.upper(), "propagate": False}
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                log_config=log_config,
                ws="websockets-sansio", ws_max_size=settings.transport_cap, server_header=False,
                proxy_headers=False, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
