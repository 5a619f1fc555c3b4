"""The served encoder's ONNX Runtime session and how it runs the rows of one Triton execution.

Shared by the Python-backend models that run the encoder: ``encoder_*`` (step 2 of a three-step ensemble) and
``text_encoder_*`` (tokenizer and encoder in one process, the fused form's first step). Both read the same model parameters:

- threads: ``intra_op_thread_count`` ORT threads, not spinning when idle (``allow_spinning`` = 0): on 2 cores shared
  with other Python-backend processes, a spinning worker takes the core the next step needs. With ``concurrent_runs``
  above 1, the runs of one execution go to the session side by side from that many threads (a session runs calls
  concurrently; the weights stay one copy), the largest runs halved until each thread has one.
- runs (``ner_pipeline.runs``): the rows of all requests are sorted by real length and cut into runs, each padded only
  to its own longest row and holding at most ``max_tokens_per_run`` tokens; ``run_planning`` = cost cuts by the
  graph-derived ``run_cost``, ratio by ``max_padding_ratio``. Positions past a row's real length get zero logits.
- memory: the initializers are copied out of the parsed model, whose buffers glibc keeps unless asked, so the heap
  is trimmed once after loading (about 200 MB back for BERT-base FP32, 75 MB for INT8). ONNX Runtime's CPU arena
  stays on (``enable_cpu_mem_arena``; with it off, malloc's fragmentation kept more memory under load), and a run of
  at least ``trim_after_tokens`` tokens shrinks the arena back when it ends, followed by a heap trim, so a burst of
  long texts does not pin its peak working set for good.
"""

from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .runs import RUN_PLANNINGS, RunCost, plan_runs, plan_runs_by_cost, run_rows, spread_runs
from .validation import EncoderInputs, InputRejected


def _heap_trim():
    try:
        malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        return lambda: malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to give back
        return lambda: None


class EncoderSession:
    """``model.onnx`` under one model's parameters; :meth:`logits` answers the rows of several requests at once."""

    def __init__(self, onnx_path: str, params: Mapping[str, str], num_labels: int):
        self.trim = _heap_trim()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "1"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        arena = params.get("enable_cpu_mem_arena", "1") == "1"
        options.enable_cpu_mem_arena = arena
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.num_labels = num_labels
        # Written by the export from the graph's embedding table and the window length (empty: not known).
        self.inputs = EncoderInputs(int(params["vocab_size"]) if params.get("vocab_size") else None,
                                    int(params["max_width"]) if params.get("max_width") else None)
        self.max_tokens_per_run = int(params.get("max_tokens_per_run", "2048"))
        self.max_padding_ratio = float(params.get("max_padding_ratio", "0.25"))
        self.run_planning = params.get("run_planning", "cost")
        if self.run_planning not in RUN_PLANNINGS:
            raise ValueError(f"run_planning must be one of {RUN_PLANNINGS}, not {self.run_planning!r}")
        self.run_cost = RunCost.parse(params["run_cost"]) if self.run_planning == "cost" else None
        self.trim_after_tokens = int(params.get("trim_after_tokens", "1024"))
        self.shrink = ort.RunOptions()
        if arena:
            self.shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
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

    def answer(self, requests: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | Exception]:
        """:meth:`logits` of the requests whose (input_ids, attention_mask) pass the input checks; an
        :class:`InputRejected` naming the problem in place of each other's."""
        answers: list = [None] * len(requests)
        valid = []
        for position, (ids, mask) in enumerate(requests):
            try:
                self.inputs.check(ids, mask)
                valid.append(position)
            except InputRejected as err:
                answers[position] = err
        for position, logits in zip(valid, self.logits([requests[position] for position in valid])):
            answers[position] = logits
        return answers

    def logits(self, requests: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | Exception]:
        """Logits of each (input_ids, attention_mask), run together; should a shared call still fail, each request
        runs alone, so that only the one that fails gets its exception back in place of logits."""
        if not requests:
            return []
        try:
            logits, largest_run = run_rows(requests, self._plan, self._run, self.num_labels, self.map_runs)
        except Exception as err:  # noqa: BLE001 - whatever ONNX Runtime raises, it is one request's answer
            if len(requests) == 1:
                return [RuntimeError(f"encoder failed on input_ids {list(requests[0][0].shape)}: {err}")]
            return [self.logits([request])[0] for request in requests]
        if largest_run >= self.trim_after_tokens:
            self.trim()
        return logits
