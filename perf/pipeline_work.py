"""The served pipeline's own work, in process on one core, and the throughput it allows the machine's cores.

What a server could reach if every request cost only the work of its ensemble's steps: the repository's tokenizer
(``ner_pipeline.windows.encode_texts`` with its ``tokenizer.json`` and window parameters), the encoder model's
``EncoderSession`` with that model's run planning at one thread, and the decoder (``Decoder.decode_request``), with
no server, client or process hand-over in between. Texts go through it one at a time (a request at concurrency 1)
and in groups of eight requests (an execution of a busy server: the encoder runs the group's rows together), each
phase timed; the ceiling is the number of cores times the one-core rate of the faster grouping. A third pass takes the
texts one at a time after an idle pause, as each process of a server at concurrency 1 idles while the others work: a
core that idled runs the same code slower for a while (colder caches, a vCPU the hypervisor descheduled), which a
tight loop never shows.
An encoder whose cost per row does not fall with the rows run beside it (a recurrent network is sequential over its
tokens) leaves a server nothing to gain from batching, so for it this ceiling, not the GEMM-bound one, bounds what
Triton can serve.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .machine import usable_cores

PHASES = ("tokenizer", "encoder", "decoder")
GROUPS = (1, 8)
IDLE_SECONDS = 0.005  # about what each step of a served request at concurrency 1 waits for the others


def _parameters(folder: Path) -> dict[str, str]:
    from export.model_hash import parse_config

    config = parse_config((folder / "config.pbtxt").read_text())
    return {key: value.string_value for key, value in config.parameters.items()}


def _per_text(seconds: list[float], texts: int) -> dict[str, float]:
    figures = {phase: round(1000 * total / texts, 3) for phase, total in zip(PHASES, seconds)}
    return {**figures, "total": round(sum(figures.values()), 3)}


def measure(repository: Path, ensemble: str, texts: list[str], warmup: int = 8) -> dict:
    """Milliseconds per text in each phase for each grouping, the best one-core rate and the ceiling on all cores."""
    from export.repository import encoder_step
    from ner_pipeline import Decoder, WindowConfig, encode_texts, load_tokenizer
    from ner_pipeline.windows import source_texts
    from ner_pipeline.session import EncoderSession

    encoder_folder = repository / encoder_step(repository, ensemble)
    window = WindowConfig.from_parameters(_parameters(repository / "tokenizer"))
    tokenizer = load_tokenizer(str(repository / "tokenizer" / "1" / "tokenizer.json"))
    decoder = Decoder.from_folder(str(repository / "decoder" / "1"))
    params = {**_parameters(encoder_folder), "intra_op_thread_count": "1", "concurrent_runs": "1"}
    encoder = EncoderSession(str(encoder_folder / "1" / "model.onnx"), params, len(decoder.labels))

    def run(group: list[str]) -> tuple[float, float, float]:
        start = time.perf_counter()
        batches = [encode_texts(tokenizer, [text], window) for text in group]  # one request per text
        tokenised = time.perf_counter()
        logits = encoder.logits([(batch.input_ids, batch.attention_mask) for batch in batches])
        encoded = time.perf_counter()
        for text, batch, scores in zip(group, batches, logits):
            decoder.decode_request(scores, batch.word_spans, batch.text_index.reshape(-1, 1),
                                   source_texts(np.array([text.encode("utf-8")], dtype=np.object_), batch))
        return tokenised - start, encoded - tokenised, time.perf_counter() - encoded

    for text in texts[:warmup]:
        run([text])
    per_group = {}
    for size in GROUPS:
        totals = [0.0] * len(PHASES)
        for first in range(0, len(texts), size):
            totals = [total + seconds for total, seconds in zip(totals, run(texts[first : first + size]))]
        per_group[size] = _per_text(totals, len(texts))
    after_idle = [0.0] * len(PHASES)
    for text in texts:
        time.sleep(IDLE_SECONDS)
        after_idle = [total + seconds for total, seconds in zip(after_idle, run([text]))]
    best = min(GROUPS, key=lambda size: per_group[size]["total"])
    one_core, cores = 1000 / per_group[best]["total"], usable_cores()
    return {"ensemble": ensemble, "encoder_model": encoder_folder.name, "texts": len(texts),
            "ms_per_text": {str(size): figures for size, figures in per_group.items()}, "best_group": best,
            "ms_per_text_after_idle": {"idle_ms": 1000 * IDLE_SECONDS, **_per_text(after_idle, len(texts))},
            "one_core_texts_per_s": round(one_core, 2), "cores": cores,
            "ceiling_texts_per_s": round(cores * one_core, 2)}
