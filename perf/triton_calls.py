"""Raw tritonclient calls with the ensembles' TEXT → ENTITIES contract, for the tests and the benchmarks that check
or measure the server itself rather than the SDK."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

MODULES = {"http": httpclient, "grpc": grpcclient}


def client(protocol: str, url: str):
    return MODULES[protocol].InferenceServerClient(url)


def tensor(protocol: str, name: str, array: np.ndarray, datatype: str):
    """An input named ``name`` holding ``array`` as ``datatype`` (any shape or type, to test what the server refuses)."""
    result = MODULES[protocol].InferInput(name, list(array.shape), datatype)
    result.set_data_from_numpy(array)
    return result


def text_tensor(protocol: str, values: list, name: str = "TEXT"):
    """One text a row ([N, 1] BYTES), each a str (sent as UTF-8) or bytes (sent as they are)."""
    array = np.array([[v if isinstance(v, bytes) else v.encode("utf-8")] for v in values], dtype=np.object_)
    return tensor(protocol, name, array, "BYTES")


def entities(result) -> list[list[dict]]:
    return [json.loads(row[0]) for row in result.as_numpy("ENTITIES")]


def infer(protocol: str, url: str, texts: list, model: str = "ner", connection=None) -> list[list[dict]]:
    """The entities of each text, by one request (``connection``: a client to reuse)."""
    connection = connection or client(protocol, url)
    return entities(connection.infer(model, [text_tensor(protocol, texts)]))
