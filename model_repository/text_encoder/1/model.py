"""Triton Python-backend model `text_encoder_*`: UTF-8 texts → encoder scores, the tokenizer and the encoder in one
process.

The first step of an ensemble in the fused form: what the tokenizer and encoder models do (ner_pipeline.windows,
ner_pipeline.session) without the hop between them, which costs about half a millisecond of serialisation and process
switching, as much as a small encoder's run (docs/serving.md). Its outputs are what the decoder model reads, laid out
as the tokenizer model lays them out: logits [N, L, labels] (zero past a row's real length), word_spans, text_index
and source_text, one row per window. The decoder stays a step of its own, as in the three-step form: Triton passes an
ensemble's cancellation on between steps, so a request whose client went away is not decoded.

The rows of all the requests of one execution run together. Each request is answered on its own: a text the pipeline
refuses (not UTF-8, over a limit) gets INVALID_ARG naming it, anything else that fails one request gets INTERNAL, and
the other requests are answered as usual.
"""

import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline import InputRejected, WindowConfig, encode_request, load_tokenizer  # noqa: E402
from ner_pipeline.session import EncoderSession  # noqa: E402
from ner_pipeline.triton_config import model_config  # noqa: E402
from ner_pipeline.windows import source_texts  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config, params = model_config(args)
        here = os.path.dirname(os.path.abspath(__file__))
        self.window = WindowConfig.from_parameters(params)
        self.tokenizer = load_tokenizer(os.path.join(here, "tokenizer.json"))
        logits = next(output for output in config["output"] if output["name"] == "logits")
        try:
            self.encoder = EncoderSession(os.path.join(here, "model.onnx"), params, int(logits["dims"][-1]))
        except ValueError as err:
            raise pb_utils.TritonModelException(str(err)) from None

    def _encode(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
        return raw, encode_request(self.tokenizer, raw, self.window)

    def execute(self, requests):
        answers, encoded = [None] * len(requests), []
        for position, request in enumerate(requests):
            try:
                encoded.append((position, *self._encode(request)))
            except InputRejected as err:
                answers[position] = pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)
            except Exception as err:  # noqa: BLE001 - one request's failure is its own answer, not the batch's
                answers[position] = pb_utils.TritonError(f"tokenizer failed: {err!r}")
        logits = self.encoder.logits([(batch.input_ids, batch.attention_mask) for _, _, batch in encoded])
        for (position, raw, batch), scores in zip(encoded, logits):
            if isinstance(scores, Exception):
                answers[position] = pb_utils.TritonError(str(scores))
                continue
            answers[position] = [
                pb_utils.Tensor("logits", scores),
                pb_utils.Tensor("word_spans", batch.word_spans),
                pb_utils.Tensor("text_index", batch.text_index.reshape(-1, 1)),
                pb_utils.Tensor("source_text", source_texts(raw, batch)),
            ]
        return [
            pb_utils.InferenceResponse(error=answer) if isinstance(answer, pb_utils.TritonError)
            else pb_utils.InferenceResponse(output_tensors=answer)
            for answer in answers
        ]
