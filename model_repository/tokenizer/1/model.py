"""Triton Python-backend model `tokenizer`: UTF-8 texts → encoder rows (windows padded to a length bucket).

Outputs, one row per window (a request of B texts yields N ≥ B rows):
  input_ids, attention_mask  INT64 [N, L]   for the encoder
  word_spans                 INT32 [N, L, 2] code-point span of the word a position scores, (-1, -1) otherwise
  text_index                 INT32 [N, 1]    which text of the request the row belongs to
  source_text                BYTES [N, 1]    the text itself on its first row, empty on the others

Each request is answered on its own (Triton has already checked TEXT's datatype and shape): a text the pipeline
refuses (not UTF-8, over a limit) gets INVALID_ARG naming it, anything else that fails one request gets INTERNAL, and
the other requests of the same execute() are answered as usual.
"""

import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline import InputRejected, WindowConfig, encode_request, load_tokenizer  # noqa: E402
from ner_pipeline.triton_config import model_config  # noqa: E402
from ner_pipeline.windows import source_texts  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.config = WindowConfig.from_parameters(model_config(args)[1])
        here = os.path.dirname(os.path.abspath(__file__))
        self.tokenizer = load_tokenizer(os.path.join(here, "tokenizer.json"))

    def _encode(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
        batch = encode_request(self.tokenizer, raw, self.config)
        return [
            pb_utils.Tensor("input_ids", batch.input_ids),
            pb_utils.Tensor("attention_mask", batch.attention_mask),
            pb_utils.Tensor("word_spans", batch.word_spans),
            pb_utils.Tensor("text_index", batch.text_index.reshape(-1, 1)),
            pb_utils.Tensor("source_text", source_texts(raw, batch)),
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._encode(request)))
            except InputRejected as err:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)))
            except Exception as err:  # noqa: BLE001 - one request's failure is its own answer, not the batch's
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"tokenizer failed: {err!r}")))
        return responses
