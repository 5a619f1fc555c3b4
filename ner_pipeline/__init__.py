"""Pre- and post-processing shared by the Triton Python-backend models and the in-process reference.

NumPy and ``tokenizers`` only: the exporter copies this package next to each Python-backend ``model.py``. Names are
imported on first use, so the encoder's process, which needs only ``ner_pipeline.runs``, never loads ``tokenizers``.
"""

from importlib import import_module

_WHERE = {
    "CrfParameters": "crf",
    "Decoder": "decoding",
    "entities_to_json": "decoding",
    "detect_scheme": "tagging",
    "entity_types": "tagging",
    "EncodedBatch": "windows",
    "InputRejected": "windows",
    "WindowConfig": "windows",
    "encode_request": "windows",
    "encode_texts": "windows",
    "load_tokenizer": "windows",
    "RunCost": "runs",
    "plan_runs": "runs",
    "plan_runs_by_cost": "runs",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'ner_pipeline' has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
