"""Triton Python-backend model `encoder_*`: runs model.onnx with the onnxruntime pip package.

The form used where Triton has no native ONNX Runtime backend (the server bundled in nvidia-pytriton).

Scheduling (see docs/benchmarks.md for the measurements behind it; the rules are in `ner_pipeline.runs`): the inputs are
declared `allow_ragged_batch`, so the dynamic batcher hands this model every queued request whatever its length
bucket. The rows of all those requests are sorted by their real length (attention mask) and cut into runs, each padded
only to its own longest row and holding at most `max_tokens_per_run` tokens. With `run_planning` = cost (the default)
the cut is the cheapest plan under a cost model of one call (fixed part, part per position, part per padded token),
which the model measures on its own session when it loads (`run_cost` = auto; or three fixed milliseconds): on a CPU
a BERT-base call pays for streaming its weights once whatever its rows, a recurrent one for each step whatever its
rows, and every padded token like a real one. With `run_planning` = ratio a run grows while its padding stays under
`max_padding_ratio` of its real tokens. Positions past a row's real length get zero logits (the decoder never reads
them).

Threads: `intra_op_thread_count` ORT threads, not spinning when idle (`allow_spinning` = 0): on 2 cores shared with
the tokenizer and decoder processes, a spinning worker takes the core the next pipeline step needs.

Memory: the session's initializers are copied out of the parsed model, whose buffers glibc keeps unless asked, so the
heap is trimmed once after loading (about 200 MB back for BERT-base FP32, 75 MB for INT8). ONNX Runtime's CPU arena
stays on (`enable_cpu_mem_arena`; with it off, malloc's fragmentation kept more memory under load), and a run of at
least `trim_after_tokens` tokens shrinks the arena back when it ends, followed by a heap trim, so a burst of long texts
does not pin its peak working set for good.
"""

import ctypes
import json
import os
import sys

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline.runs import (RUN_PLANNINGS, RunCost, calibrate_run_cost, plan_runs, plan_runs_by_cost,  # noqa: E402
                               run_rows)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - must exist
        return libc
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        libc = _glibc()
        self.trim = (lambda: libc.malloc_trim(0)) if libc is not None else (lambda: None)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "1"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.arena = params.get("enable_cpu_mem_arena", "1") == "1"
        options.enable_cpu_mem_arena = self.arena
        # Idle ORT worker threads spin by default, taking a core from the tokenizer and decoder processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
        here = os.path.dirname(os.path.abspath(__file__))
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.num_labels = int(config["output"][0]["dims"][-1])
        self.max_tokens_per_run = int(params.get("max_tokens_per_run", "2048"))
        self.max_padding_ratio = float(params.get("max_padding_ratio", "0.25"))
        self.run_planning = params.get("run_planning", "cost")
        if self.run_planning not in RUN_PLANNINGS:
            raise pb_utils.TritonModelException(f"run_planning must be one of {RUN_PLANNINGS}, not {self.run_planning!r}")
        self.trim_after_tokens = int(params.get("trim_after_tokens", "1024"))
        self.shrink = ort.RunOptions()
        if self.arena:
            self.shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        if self.run_planning == "cost":
            run_cost = params.get("run_cost", "auto")
            self.run_cost = (calibrate_run_cost(self._run) if run_cost == "auto" else RunCost.parse(run_cost))
            pb_utils.Logger.log_info(f"{config['name']}: run cost (ms per call, per position, per token) "
                                     f"{self.run_cost} ({'measured' if run_cost == 'auto' else 'configured'})")
        self.trim()

    def _plan(self, lengths):
        if self.run_planning == "cost":
            return plan_runs_by_cost(lengths, self.run_cost, self.max_tokens_per_run)
        return plan_runs(lengths, self.max_tokens_per_run, self.max_padding_ratio)

    def _run(self, ids, mask):
        # A large run gives back, when it ends, what the arena grew for it; small runs keep the arena warm.
        options = self.shrink if ids.size >= self.trim_after_tokens else None
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask}, options)[0]

    def execute(self, requests):
        inputs, outputs = [], [None] * len(requests)
        for position, request in enumerate(requests):
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            if ids.shape != mask.shape or ids.ndim != 2:
                outputs[position] = pb_utils.TritonError(
                    f"input_ids {list(ids.shape)} and attention_mask {list(mask.shape)} must share one 2-D shape")
                continue
            inputs.append((position, ids, mask))
        logits, largest_run = run_rows([(ids, mask) for _, ids, mask in inputs], self._plan, self._run,
                                       self.num_labels)
        for (position, _, _), out in zip(inputs, logits):
            outputs[position] = out
        if largest_run >= self.trim_after_tokens:
            self.trim()
        return [
            pb_utils.InferenceResponse(error=out) if isinstance(out, pb_utils.TritonError)
            else pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", out)])
            for out in outputs
        ]
