"""Raw tritonclient calls, so that the serving tests check the server's contract itself."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

MODULES = {"http": httpclient, "grpc": grpcclient}


def client(protocol: str, url: str):
    return MODULES[protocol].InferenceServerClient(url)


def text_tensor(protocol: str, values: list, name: str = "TEXT"):
    array = np.array([[v if isinstance(v, bytes) else v.encode("utf-8")] for v in values], dtype=np.object_)
    tensor = MODULES[protocol].InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def infer(served, protocol: str, texts: list, model: str = "ner") -> list[list[dict]]:
    url = served.http_url if protocol == "http" else served.grpc_url
    result = client(protocol, url).infer(model, [text_tensor(protocol, texts)])
    return [json.loads(row[0]) for row in result.as_numpy("ENTITIES")]
