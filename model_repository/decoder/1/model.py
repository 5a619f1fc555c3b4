"""Triton Python-backend model `decoder`: encoder scores → one JSON array of entities per text.

Tags each window (CRF Viterbi when the checkpoint has a CRF, argmax otherwise), merges a text's overlapping
windows and maps words back to code-point offsets; see ner_pipeline/decoding.py for the rules and the score.

The windows of all the requests of one execute() are tagged together, in batched passes. Each request is answered
on its own: tensors that do not fit together (ner_pipeline/validation.py) get INVALID_ARG naming the problem; should
anything else fail, the requests are decoded again one at a time, so that only the one that fails gets INTERNAL and
the others are answered as usual.
"""

import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline import Decoder, InputRejected  # noqa: E402


INPUTS = ("logits", "word_spans", "text_index", "source_text")


def _tensors(request):
    return tuple(pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in INPUTS)


def _response(answer):
    if isinstance(answer, InputRejected):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(answer), pb_utils.TritonError.INVALID_ARG))
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("ENTITIES", answer)])


class TritonPythonModel:
    def initialize(self, args):
        self.decoder = Decoder.from_folder(os.path.dirname(os.path.abspath(__file__)))

    def execute(self, requests):
        try:
            return [_response(answer) for answer in self.decoder.decode_requests([_tensors(r) for r in requests])]
        except Exception:  # noqa: BLE001 - find the request that fails by answering each alone
            return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            return _response(self.decoder.decode_requests([_tensors(request)])[0])
        except Exception as err:  # noqa: BLE001 - one request's failure is its own answer, not the batch's
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"decoder failed: {err!r}"))
