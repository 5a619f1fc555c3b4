"""What a Python-backend model.py reads from the arguments Triton passes to ``initialize``."""

from __future__ import annotations

import json


def model_config(args: dict) -> tuple[dict, dict[str, str]]:
    """The model's configuration (parsed JSON) and its string parameters, by key."""
    config = json.loads(args["model_config"])
    return config, {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
