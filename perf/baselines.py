"""In-process baselines over the same texts as the served runs.

1. ``naive_pipeline``: what a user writes first. A Hugging Face ``transformers`` token-classification pipeline on
   PyTorch FP32 (``torch.set_num_threads(2)``, one text per call, ``aggregation_strategy="simple"``); for a model that
   is not a transformers architecture (the LAC BiGRU + CRF), its own PyTorch module called per text with the project's
   decoding (``ner_pipeline``: windows, CRF Viterbi, offsets).
2. ``onnx_session``: the compute limit. One ONNX Runtime session (``intra_op_num_threads=2``, all graph
   optimisations) over the texts one at a time, each at its own length; tokenisation is done beforehand and not timed.
3. ``int8_accuracy``: entity-level precision/recall/F1 against MSRA's gold entities, for FP32 and each INT8 build
   (static as served, dynamic, static with ``reduce_range``), all decoded by the served decoder's code.
4. ``int8_label_agreement``: how often each INT8 build gives FP32's labels (the decoder's), and
   ``batch_dependence``: how far a row's logits move when it shares a call with other rows.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import numpy as np

from .load import percentiles


def _timed(run, items, warmup: int) -> tuple[list[float], float]:
    for item in items[:warmup]:
        run(item)
    latencies = []
    started = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        run(item)
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, time.perf_counter() - started


def _summary(name: str, latencies: list[float], seconds: float, **extra) -> dict:
    return {"name": name, "texts": len(latencies), "seconds": round(seconds, 3),
            "throughput_per_s": round(len(latencies) / seconds, 2), **percentiles(latencies), **extra}


def is_transformers_checkpoint(checkpoint: Path) -> bool:
    from export.architectures import PROJECT_ARCHITECTURES

    model_type = json.loads((checkpoint / "config.json").read_text()).get("model_type", "")
    return model_type not in PROJECT_ARCHITECTURES


def naive_pipeline(checkpoint: Path, tokenizer_json: Path, texts: list[str], warmup: int = 3) -> dict:
    import torch

    torch.set_num_threads(2)
    if is_transformers_checkpoint(checkpoint):
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        model = AutoModelForTokenClassification.from_pretrained(str(checkpoint))
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                        device=-1)
        with torch.inference_mode():
            latencies, seconds = _timed(pipe, texts, warmup)
        kind = "transformers pipeline('token-classification', aggregation_strategy='simple'), PyTorch FP32"
        del pipe, model
    else:
        from export.checkpoint import load_checkpoint
        from ner_pipeline import Decoder, WindowConfig, encode_texts, load_tokenizer

        checkpoint_obj = load_checkpoint(checkpoint)
        model = checkpoint_obj.model.eval()
        decoder = Decoder(checkpoint_obj.labels, checkpoint_obj.crf)
        tokenizer = load_tokenizer(str(tokenizer_json))
        window = WindowConfig()

        def run(text: str):
            batch = encode_texts(tokenizer, [text], window)
            n = int(batch.attention_mask.sum(axis=1).max())
            with torch.inference_mode():
                logits = model(torch.from_numpy(batch.input_ids[:, :n]),
                               torch.from_numpy(batch.attention_mask[:, :n])).float().numpy()
            return decoder.decode_batch(logits, batch.word_spans[:, :n], batch.text_index, [text])

        latencies, seconds = _timed(run, texts, warmup)
        kind = f"{checkpoint_obj.model_type} PyTorch module per text + ner_pipeline decoding, FP32"
        del model, checkpoint_obj
    gc.collect()
    return _summary("naive_pytorch", latencies, seconds, what=kind, torch_threads=2, batch_size=1)


def ort_session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def encoder_rows(tokenizer_json: Path, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each text's rows at their own length (no padding): what a batch-1 session is given."""
    return [row for rows in rows_per_text(tokenizer_json, texts) for row in rows]


def rows_per_text(tokenizer_json: Path, texts: list[str]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Each text's encoder rows (windows), each at its own real length."""
    from ner_pipeline import WindowConfig, encode_texts, load_tokenizer

    tokenizer, window = load_tokenizer(str(tokenizer_json)), WindowConfig()
    per_text = []
    for text in texts:
        batch = encode_texts(tokenizer, [text], window)
        lengths = batch.attention_mask.sum(axis=1)
        per_text.append([(batch.input_ids[r : r + 1, : lengths[r]].copy(), batch.attention_mask[r : r + 1, : lengths[r]].copy())
                         for r in range(batch.rows)])
    return per_text


def session_runner(session):
    """One text through a batch-1 session: its windows one after the other."""

    def run(rows):
        for ids, mask in rows:
            session.run(["logits"], {"input_ids": ids, "attention_mask": mask})

    return run


def onnx_session(name: str, onnx_path: Path, tokenizer_json: Path, texts: list[str], warmup: int = 3) -> dict:
    """Batch 1, one text at a time (a long text's windows one after the other), tokenisation not timed."""
    session = ort_session(onnx_path)
    latencies, seconds = _timed(session_runner(session), rows_per_text(tokenizer_json, texts), warmup)
    del session
    gc.collect()
    return _summary(name, latencies, seconds, what=f"ONNX Runtime session {onnx_path.name}, intra_op_num_threads=2, "
                    "ORT_ENABLE_ALL, batch 1, tokenisation excluded", onnx_bytes=onnx_path.stat().st_size)


def batched_session(name: str, onnx_path: Path, tokenizer_json: Path, texts: list[str], batch_size: int = 8,
                    max_padding_ratio: float | None = None) -> dict:
    """For the tuning notes: the same session over rows sorted by length and run up to ``batch_size`` at a time —
    what a length-aware batching server can gain here. Runs are cut as the served encoder cuts them by default (the
    cheapest plan under the cost model derived from the graph, ``export.run_cost``), or, given
    ``max_padding_ratio``, where a run's padding would pass that share of its real tokens."""
    from export.run_cost import graph_run_cost
    from ner_pipeline.runs import plan_runs, plan_runs_by_cost

    session = ort_session(onnx_path)
    rows = encoder_rows(tokenizer_json, texts)
    lengths = [r[0].shape[1] for r in rows]
    if max_padding_ratio is None:
        cost = graph_run_cost(onnx_path)
        plan, rule = plan_runs_by_cost(lengths, cost, max_tokens=10**9, max_rows=batch_size), f"cost {cost}"
    else:
        plan = plan_runs(lengths, max_tokens=10**9, max_padding_ratio=max_padding_ratio, max_rows=batch_size)
        rule = f"padding <= {max_padding_ratio:.0%}"
    groups = [[rows[i] for i in run] for run in plan]
    batches = []
    for chunk in groups:
        width = max(r[0].shape[1] for r in chunk)
        ids = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for j, (row_ids, row_mask) in enumerate(chunk):
            ids[j, : row_ids.shape[1]] = row_ids[0]
            mask[j, : row_mask.shape[1]] = row_mask[0]
        batches.append((ids, mask))
    session.run(["logits"], {"input_ids": batches[0][0], "attention_mask": batches[0][1]})
    started = time.perf_counter()
    for ids, mask in batches:
        session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
    seconds = time.perf_counter() - started
    del session
    gc.collect()
    return {"name": name, "rows": len(rows), "batch_size": batch_size, "rule": rule,
            "batches": len(batches), "seconds": round(seconds, 3), "throughput_per_s": round(len(rows) / seconds, 2)}


def _entity_scores(predicted: list[set], gold: list[set]) -> dict:
    tp = sum(len(p & g) for p, g in zip(predicted, gold))
    n_pred = sum(len(p) for p in predicted)
    n_gold = sum(len(g) for g in gold)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "predicted": n_pred,
            "gold": n_gold}


def _decoder(export_dir: Path):
    from ner_pipeline import CrfParameters, Decoder

    labels = json.loads((export_dir / "decoder" / "1" / "labels.json").read_text())
    crf_path = export_dir / "decoder" / "1" / "crf.npz"
    return Decoder(labels, CrfParameters.from_npz(str(crf_path)) if crf_path.exists() else None)


def int8_label_agreement(onnx_files: dict[str, Path], export_dir: Path, texts: list[str]) -> dict[str, float]:
    """Per INT8 file (every entry but ``fp32``), the share of scored positions where the decoder's label (CRF
    Viterbi, or argmax) equals FP32's: the exporter's ``label_agreement``, one text per call."""
    from export.quantize import label_agreement
    from ner_pipeline import WindowConfig, encode_texts, load_tokenizer

    decoder = _decoder(export_dir)
    tokenizer, window = load_tokenizer(str(export_dir / "tokenizer" / "1" / "tokenizer.json")), WindowConfig()
    rows = []
    for text in texts:
        batch = encode_texts(tokenizer, [text], window)
        rows.append((batch.input_ids, batch.attention_mask, batch.word_spans[..., 0] >= 0))
    fp32 = ort_session(onnx_files["fp32"])
    agreement = {name: round(label_agreement(fp32, ort_session(path), rows,
                                             tag=lambda emissions: decoder.tag_window(emissions)[0]), 5)
                 for name, path in onnx_files.items() if name != "fp32"}
    del fp32
    gc.collect()
    return agreement


def batch_dependence(onnx_files: dict[str, Path], tokenizer_json: Path, texts: list[str], rows: int = 8) -> dict:
    """Per ONNX file, the largest change of a logit at a real position between a row run alone (at its own length)
    and the same row run in one call with the other ``rows - 1`` rows (padded to the longest)."""
    chosen = [row for per_text in rows_per_text(tokenizer_json, texts) for row in per_text][:rows]
    width = max(ids.shape[1] for ids, _ in chosen)
    ids = np.zeros((len(chosen), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, (row_ids, row_mask) in enumerate(chosen):
        ids[r, : row_ids.shape[1]], mask[r, : row_mask.shape[1]] = row_ids[0], row_mask[0]
    changes = {}
    for name, path in onnx_files.items():
        session = ort_session(path)
        together = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        changes[name] = float(max(
            np.abs(session.run(["logits"], {"input_ids": row_ids, "attention_mask": row_mask})[0][0]
                   - together[r, : row_ids.shape[1]]).max()
            for r, (row_ids, row_mask) in enumerate(chosen)))
        del session
    gc.collect()
    return {"rows": len(chosen), "max_abs_logit_change": changes}


def int8_accuracy(onnx_files: dict[str, Path], export_dir: Path, sentences) -> dict:
    """Entity P/R/F1 (exact span and type) on MSRA test sentences per ONNX file, with the served decoder's code, and
    the share of sentences whose entities equal FP32's."""
    from ner_pipeline import WindowConfig, encode_texts, load_tokenizer

    decoder = _decoder(export_dir)
    labels = decoder.labels
    tokenizer, window = load_tokenizer(str(export_dir / "tokenizer" / "1" / "tokenizer.json")), WindowConfig()
    encoded = [encode_texts(tokenizer, [s.text], window) for s in sentences]
    gold = [set(s.entities) for s in sentences]
    results, predictions = {}, {}
    for name, path in onnx_files.items():
        session = ort_session(path)
        predicted = []
        for sentence, batch in zip(sentences, encoded):
            logits = np.zeros(batch.input_ids.shape + (len(labels),), dtype=np.float32)
            for r in range(batch.rows):
                n = int(batch.attention_mask[r].sum())
                logits[r, :n] = session.run(["logits"], {"input_ids": batch.input_ids[r : r + 1, :n],
                                                         "attention_mask": batch.attention_mask[r : r + 1, :n]})[0][0]
            entities = decoder.decode_batch(logits, batch.word_spans, batch.text_index, [sentence.text])[0]
            predicted.append({(e["start"], e["end"], e["type"]) for e in entities})
        predictions[name] = predicted
        results[name] = _entity_scores(predicted, gold)
        del session
    if "fp32" in predictions:
        for name, predicted in predictions.items():
            same = sum(p == f for p, f in zip(predicted, predictions["fp32"]))
            results[name]["same_entities_as_fp32"] = round(same / max(len(sentences), 1), 4)
    gc.collect()
    return {"sentences": len(sentences), "scores": results}
