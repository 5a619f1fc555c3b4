"""Triton Python-backend model `encoder_*`: runs model.onnx with the onnxruntime pip package.

The form used where Triton has no native ONNX Runtime backend (the server bundled in nvidia-pytriton).

Scheduling (see docs/benchmarks.md for the measurements behind it; the rules are in `ner_pipeline.runs`): the inputs are
declared `allow_ragged_batch`, so the dynamic batcher hands this model every queued request whatever its length
bucket. The rows of all those requests are sorted by their real length (attention mask) and cut into runs, each padded
only to its own longest row and holding at most `max_tokens_per_run` tokens. With `run_planning` = cost (the default)
the cut is the cheapest plan under a cost model of one call (fixed part, part per position, part per padded token),
`run_cost`, which the export derives from this model's graph (export/run_cost.py): on a CPU a BERT-base call pays for
streaming its weights once whatever its rows, a recurrent one for each step whatever its rows, and every padded token
like a real one. Nothing is timed at load, so the same files group the same rows on every start. With `run_planning` = ratio a run grows while its padding stays under
`max_padding_ratio` of its real tokens. Positions past a row's real length get zero logits (the decoder never reads
them).

Threads: `intra_op_thread_count` ORT threads, not spinning when idle (`allow_spinning` = 0): on 2 cores shared with
the tokenizer and decoder processes, a spinning worker takes the core the next pipeline step needs. With
`concurrent_runs` above 1, the runs of one execution go to the session side by side from that many threads (a session
runs calls concurrently; the weights stay one copy), the largest runs halved until each thread has one: a lone
request gets all of the session's threads, a busy instance keeps every core on a run of its own.

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
from concurrent.futures import ThreadPoolExecutor

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ner_pipeline.runs import RUN_PLANNINGS, RunCost, plan_runs, plan_runs_by_cost, run_rows, spread_runs  # noqa: E402
from ner_pipeline.validation import EncoderInputs, InputRejected  # noqa: E402


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
        # Written by the export from the graph's embedding table and the window length (empty: not known).
        self.inputs = EncoderInputs(int(params["vocab_size"]) if params.get("vocab_size") else None,
                                    int(params["max_width"]) if params.get("max_width") else None)
        self.max_tokens_per_run = int(params.get("max_tokens_per_run", "2048"))
        self.max_padding_ratio = float(params.get("max_padding_ratio", "0.25"))
        self.run_planning = params.get("run_planning", "cost")
        if self.run_planning not in RUN_PLANNINGS:
            raise pb_utils.TritonModelException(f"run_planning must be one of {RUN_PLANNINGS}, not {self.run_planning!r}")
        self.trim_after_tokens = int(params.get("trim_after_tokens", "1024"))
        self.shrink = ort.RunOptions()
        if self.arena:
            self.shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.run_cost = RunCost.parse(params["run_cost"]) if self.run_planning == "cost" else None
        self.lanes = int(params.get("concurrent_runs", "1"))
        self.map_runs = ThreadPoolExecutor(self.lanes, thread_name_prefix="run").map if self.lanes > 1 else map
        self.trim()

    def _plan(self, lengths):
        if self.run_planning == "cost":
            runs = plan_runs_by_cost(lengths, self.run_cost, self.max_tokens_per_run)
        else:
            runs = plan_runs(lengths, self.max_tokens_per_run, self.max_padding_ratio)
        return spread_runs(runs, self.lanes)

    def _run(self, ids, mask):
        # A large run gives back, when it ends, what the arena grew for it; small runs keep the arena warm.
        options = self.shrink if ids.size >= self.trim_after_tokens else None
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask}, options)[0]

    def execute(self, requests):
        inputs, outputs = [], [None] * len(requests)
        for position, request in enumerate(requests):
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            try:
                self.inputs.check(ids, mask)
            except InputRejected as err:
                outputs[position] = pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)
                continue
            inputs.append((position, ids, mask))
        for (position, _, _), out in zip(inputs, self._logits([(ids, mask) for _, ids, mask in inputs])):
            outputs[position] = out
        return [
            pb_utils.InferenceResponse(error=out) if isinstance(out, pb_utils.TritonError)
            else pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", out)])
            for out in outputs
        ]

    def _logits(self, requests):
        """Logits of each (input_ids, attention_mask), run together; should a shared call still fail, each request runs
        alone, so that only the one that fails gets an error."""
        try:
            logits, largest_run = run_rows(requests, self._plan, self._run, self.num_labels, self.map_runs)
        except Exception as err:  # noqa: BLE001 - whatever ONNX Runtime raises, it is one request's answer
            if len(requests) == 1:
                return [pb_utils.TritonError(f"encoder failed on input_ids {list(requests[0][0].shape)}: {err}")]
            return [self._logits([request])[0] for request in requests]
        if largest_run >= self.trim_after_tokens:
            self.trim()
        return logits
