"""Triton Python-backend model `decoder`: encoder scores → one JSON array of entities per text.

Tags each window (CRF Viterbi when the checkpoint has a CRF, argmax otherwise), merges a text's overlapping
windows and maps words back to code-point offsets; see ner_pipeline/decoding.py for the rules and the score.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline import CrfParameters, Decoder, entities_to_json  # noqa: E402


def _input(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "labels.json"), encoding="utf-8") as f:
            labels = json.load(f)
        crf_path = os.path.join(here, "crf.npz")
        crf = CrfParameters.from_npz(crf_path) if os.path.exists(crf_path) else None
        self.decoder = Decoder(labels, crf)

    def _decode(self, request):
        text_index = _input(request, "text_index").reshape(-1)
        source_text = _input(request, "source_text").reshape(-1)
        n_texts = int(text_index.max()) + 1 if len(text_index) else 0
        texts = [""] * n_texts
        first_rows = np.unique(text_index, return_index=True)[1]
        for row in first_rows:
            texts[text_index[row]] = source_text[row].decode("utf-8")
        entities = self.decoder.decode_batch(_input(request, "logits"), _input(request, "word_spans"), text_index, texts)
        out = np.array([[entities_to_json(e).encode("utf-8")] for e in entities], dtype=np.object_)
        return [pb_utils.Tensor("ENTITIES", out.reshape(n_texts, 1))]

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=self._decode(request)) for request in requests]
