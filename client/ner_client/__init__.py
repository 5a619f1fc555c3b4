"""Python client of the Chinese NER service served by Triton (ensembles ``ner`` = INT8 and ``ner_fp32``).

    from ner_client import NerClient
    with NerClient("127.0.0.1:8001") as ner:                      # gRPC; "http://127.0.0.1:8000" for HTTP
        for e in ner.extract("张三在北京的清华大学读书。"):
            print(e.type, e.start, e.end, e.span, e.score)
        print(ner.extract_many(["李四去了上海。", "王小明在微软工作。"]))
"""

from .aio import AsyncNerClient
from .entity import Entity, ModelInfo
from .errors import (InputRejected, ModelNotReady, NerError, RequestTimeout, ServerBusy, ServerError,
                     ServerUnavailable)
from .sync import NerClient

__version__ = "0.1.0"

__all__ = [
    "NerClient",
    "AsyncNerClient",
    "Entity",
    "ModelInfo",
    "NerError",
    "ServerUnavailable",
    "ServerBusy",
    "ModelNotReady",
    "InputRejected",
    "RequestTimeout",
    "ServerError",
]
