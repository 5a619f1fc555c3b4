"""Fused against unfused encoder graphs, in process: FP32 and static INT8, texts per second at batch 1 and batch 8.

``run(spec)`` exports the checkpoint twice with the project's exporter (``export_checkpoint``), with ONNX Runtime's
transformer fusions (the default) and with ``--no-fuse``, and times one ONNX Runtime session per encoder file
(``baselines.ort_session``: 2 threads, all session optimisations) over the same MSRA test sentences, tokenisation not
timed: batch 1 runs each text alone at its own length (a long text's windows one after the other), batch 8 runs eight
consecutive texts in one call, laid out as the served tokenizer lays them out (rows padded to one length bucket).
Beside the speeds: the fused operators, and each export's FP32 parity with PyTorch and INT8 label agreement.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from .baselines import _timed, ort_session, rows_per_text, session_runner
from .models import ModelSpec, bench_repository_config
from .texts import texts as msra_texts

GRAPHS = {"fp32": "encoder_fp32", "int8": "encoder_int8"}
BATCH = 8


def _texts_per_s(session, per_text: list, groups: list[dict]) -> tuple[float, float]:
    """(batch 1, batch 8) texts per second."""
    _, seconds = _timed(session_runner(session), per_text, warmup=3)
    session.run(["logits"], groups[0])
    started = time.perf_counter()
    for inputs in groups:
        session.run(["logits"], inputs)
    return len(per_text) / seconds, len(per_text) / (time.perf_counter() - started)


def run(spec: ModelSpec, texts: list[str] | None = None, n_texts: int = 64, work_dir: Path | None = None,
        log=print) -> dict:
    """The comparison as a dict: ``texts_per_s[graph][fused|unfused][batch_1|batch_8]``, ``speedup`` (fused /
    unfused), and what each export reported. Only a BERT-family checkpoint has a fused graph; for another,
    ``fused`` is false and ``unfused_because`` says why."""
    from export.optimize import GraphOptimizationConfig
    from export.pipeline import export_checkpoint
    from ner_pipeline import WindowConfig, encode_texts, load_tokenizer

    texts = texts if texts is not None else msra_texts(n_texts)
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="perf-fusion-")) if owned else work_dir
    try:
        reports = {}
        for variant, enabled in (("fused", True), ("unfused", False)):
            log(f"fusion comparison: exporting {spec.checkpoint} {variant}")
            reports[variant] = export_checkpoint(spec.checkpoint, work / variant, bench_repository_config(),
                                                 fusion_cfg=GraphOptimizationConfig(enabled=enabled))
        result = {"model": spec.description, "texts": len(texts), "batch_size": BATCH,
                  "fused": reports["fused"]["fusion"]["applied"],
                  "fusion": reports["fused"]["fusion"],
                  "parity_max_abs_logit_diff": {v: r["parity_max_abs_logit_diff"] for v, r in reports.items()},
                  "int8_label_agreement": {v: r["int8_label_agreement"] for v, r in reports.items()}}
        if not result["fused"]:
            result["unfused_because"] = reports["fused"]["fusion"]["unfused_because"]
            return result

        tokenizer_json = work / "fused" / "tokenizer" / "1" / "tokenizer.json"
        per_text = rows_per_text(tokenizer_json, texts)
        tokenizer, window = load_tokenizer(str(tokenizer_json)), WindowConfig()
        groups = []
        for start in range(0, len(texts), BATCH):
            batch = encode_texts(tokenizer, texts[start : start + BATCH], window)
            groups.append({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})
        speeds: dict = {}
        for graph, encoder in GRAPHS.items():
            for variant in ("unfused", "fused"):
                path = work / variant / encoder / "1" / "model.onnx"
                session = ort_session(path)
                one, eight = _texts_per_s(session, per_text, groups)
                del session
                speeds.setdefault(graph, {})[variant] = {"batch_1": round(one, 2), "batch_8": round(eight, 2),
                                                         "onnx_bytes": path.stat().st_size}
                log(f"  {graph} {variant}: batch 1 {one:.1f} texts/s, batch 8 {eight:.1f} texts/s")
        result["texts_per_s"] = speeds
        result["speedup"] = {graph: {b: round(s["fused"][b] / s["unfused"][b], 3) for b in ("batch_1", "batch_8")}
                             for graph, s in speeds.items()}
        return result
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)
