"""Triton Python-backend model `encoder_*`: runs model.onnx with the onnxruntime pip package.

The form used where Triton has no native ONNX Runtime backend (the server bundled in nvidia-pytriton). The inputs are
declared `allow_ragged_batch`, so the dynamic batcher hands this model every queued request whatever its length
bucket; `ner_pipeline.session` regroups their rows by real length into runs and holds the session's threads and
memory rules (docs/benchmarks.md for the measurements behind them).
"""

import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline.session import EncoderSession  # noqa: E402
from ner_pipeline.triton_config import model_config  # noqa: E402
from ner_pipeline.validation import InputRejected  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config, params = model_config(args)
        here = os.path.dirname(os.path.abspath(__file__))
        try:
            self.encoder = EncoderSession(os.path.join(here, "model.onnx"), params,
                                          num_labels=int(config["output"][0]["dims"][-1]))
        except ValueError as err:
            raise pb_utils.TritonModelException(str(err)) from None

    def execute(self, requests):
        rows = [(pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy(),
                 pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()) for request in requests]
        return [pb_utils.InferenceResponse(error=_error(out)) if isinstance(out, Exception)
                else pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", out)])
                for out in self.encoder.answer(rows)]


def _error(err: Exception):
    """A refused input is the client's error; anything else failed in here."""
    code = pb_utils.TritonError.INVALID_ARG if isinstance(err, InputRejected) else pb_utils.TritonError.INTERNAL
    return pb_utils.TritonError(str(err), code)
