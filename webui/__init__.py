"""The live web UI: a static page and a WebSocket gateway to Triton (``python -m webui``)."""
