"""Triton Python-backend model `decoder`: encoder scores → one JSON array of entities per text.

Tags each window (CRF Viterbi when the checkpoint has a CRF, argmax otherwise), merges a text's overlapping
windows and maps words back to code-point offsets; see ner_pipeline/decoding.py for the rules and the score.

Each request of an execute() is decoded and answered on its own: tensors that do not fit together
(ner_pipeline/validation.py) get INVALID_ARG naming the problem, anything else that fails gets INTERNAL, and the other
requests are answered as usual.
"""

import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline import Decoder, InputRejected  # noqa: E402


INPUTS = ("logits", "word_spans", "text_index", "source_text")


def _tensors(request):
    return tuple(pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in INPUTS)


class TritonPythonModel:
    def initialize(self, args):
        self.decoder = Decoder.from_folder(os.path.dirname(os.path.abspath(__file__)))

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            entities = self.decoder.decode_request(*_tensors(request))
        except InputRejected as err:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG))
        except Exception as err:  # noqa: BLE001 - one request's failure is its own answer, not the batch's
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"decoder failed: {err!r}"))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("ENTITIES", entities)])
