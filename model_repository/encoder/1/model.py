"""Triton Python-backend model `encoder_*`: runs model.onnx with the onnxruntime pip package.

The form used where Triton has no native ONNX Runtime backend (the server bundled in nvidia-pytriton). Rows of
all requests in a dynamic batch are grouped by their (bucketed) length and run together, in chunks that keep
each ONNX Runtime call under a token budget, so no compute is spent on padding beyond the bucket.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "1"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The arena grows to the largest batch ever seen and keeps it; shrinking keeps idle memory low.
        options.enable_cpu_mem_arena = params.get("enable_cpu_mem_arena", "1") == "1"
        here = os.path.dirname(os.path.abspath(__file__))
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.max_tokens_per_run = int(params.get("max_tokens_per_run", "8192"))

    def _run(self, input_ids, attention_mask):
        rows_per_run = max(1, self.max_tokens_per_run // max(1, input_ids.shape[1]))
        parts = [
            self.session.run(["logits"], {"input_ids": input_ids[i : i + rows_per_run],
                                          "attention_mask": attention_mask[i : i + rows_per_run]})[0]
            for i in range(0, input_ids.shape[0], rows_per_run)
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def execute(self, requests):
        inputs = [
            (pb_utils.get_input_tensor_by_name(r, "input_ids").as_numpy(),
             pb_utils.get_input_tensor_by_name(r, "attention_mask").as_numpy())
            for r in requests
        ]
        outputs = [None] * len(requests)
        by_length = {}
        for position, (ids, mask) in enumerate(inputs):
            if ids.shape != mask.shape or ids.ndim != 2:
                outputs[position] = pb_utils.TritonError(
                    f"input_ids {list(ids.shape)} and attention_mask {list(mask.shape)} must share one 2-D shape")
                continue
            by_length.setdefault(ids.shape[1], []).append(position)
        for positions in by_length.values():
            ids = np.concatenate([inputs[p][0] for p in positions])
            mask = np.concatenate([inputs[p][1] for p in positions])
            logits = self._run(ids, mask)
            offset = 0
            for p in positions:
                n = inputs[p][0].shape[0]
                outputs[p] = logits[offset : offset + n]
                offset += n
        return [
            pb_utils.InferenceResponse(error=out) if isinstance(out, pb_utils.TritonError)
            else pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", out)])
            for out in outputs
        ]
