"""Pre- and post-processing shared by the Triton Python-backend models and the in-process reference.

NumPy and ``tokenizers`` only: the exporter copies this package next to each Python-backend ``model.py``.
"""

from .crf import CrfParameters
from .decoding import Decoder, entities_to_json
from .tagging import detect_scheme, entity_types
from .windows import EncodedBatch, InputRejected, WindowConfig, decode_utf8, encode_texts, load_tokenizer

__all__ = [
    "CrfParameters",
    "Decoder",
    "EncodedBatch",
    "InputRejected",
    "WindowConfig",
    "decode_utf8",
    "detect_scheme",
    "encode_texts",
    "entities_to_json",
    "entity_types",
    "load_tokenizer",
]
