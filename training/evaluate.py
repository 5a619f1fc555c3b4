"""In-process scoring: decode with the model's own CRF over first sub-tokens, map back to characters, score.

``python -m training.evaluate --model models/default --split dev|test`` scores a checkpoint in process (FP32 torch,
whole sentences, no windowing: the GRU has no position limit).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ner_model.data import msra_file, read_bio
from ner_model.scoring import score_tags

from . import data as D


@torch.no_grad()
def predict(model, encoded: list, batch_tokens: int = 16000, max_batch: int = 128, progress: bool = False):
    """Word-level label ids for every encoded sentence (whole sentences, one chunk each)."""
    was_training = model.training
    model.eval()
    chunks = D.make_chunks(encoded, max_tokens=10**9)
    # make_chunks skips sentences without words; keep an index
    keep = [i for i, e in enumerate(encoded) if e.word_token]
    order = D.bucket_batches(chunks, batch_tokens, max_batch, rng=None, shuffle=False)
    preds: list = [None] * len(chunks)
    it = order
    if progress:
        from tqdm import tqdm

        it = tqdm(order, desc="decode", unit="batch", dynamic_ncols=True)
    for batch in it:
        ids, mask, pos, wmask, _ = D.collate([chunks[i] for i in batch])
        paths = model.decode(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(pos),
                             torch.from_numpy(wmask))
        for i, p in zip(batch, paths):
            preds[i] = p
    out: list = [[] for _ in encoded]
    for k, i in enumerate(keep):
        out[i] = preds[k]
    if was_training:
        model.train()
    return out


def char_level(encoded: list, word_preds: list, labels: list[str]):
    from ner_pipeline.tagging import detect_scheme

    scheme = detect_scheme(labels)
    gold, pred = [], []
    for e, p in zip(encoded, word_preds):
        gold.append(list(e.tags))
        pred.append(D.word_tags_to_char_tags(e, [labels[i] for i in p], scheme))
    return gold, pred


def dev_scores(gold, pred) -> dict:
    """``ner_model.scoring`` in percent, as the training log and the checkpoint's ``dev_scores`` record it:
    {"overall": {...}, "PER": {...}, ...} with precision, recall, f1 and support."""
    scores = score_tags(gold, pred)
    return {name: {"precision": 100 * s["precision"], "recall": 100 * s["recall"], "f1": 100 * s["f1"],
                   "support": s["support"]}
            for name, s in {"overall": scores["overall"], **scores["per_type"]}.items()}


def evaluate(model, encoded, labels, **kw) -> dict:
    preds = predict(model, encoded, **kw)
    gold, pred = char_level(encoded, preds, labels)
    return dev_scores(gold, pred)


def score_checkpoint(args) -> int:
    """``python -m training.evaluate`` with the parsed options (``training.cli.EVALUATE_SETTINGS``)."""
    from export.checkpoint import load_tokenizer
    from ner_model.ensemble import load_tagger

    torch.set_num_threads(args.threads)
    model = load_tagger(args.model)
    labels = [model.config["id2label"][str(i)] for i in range(model.num_labels)]
    tok = load_tokenizer(args.model)
    if args.split == "test":
        sents = read_bio(msra_file("test", args.data_dir))
    else:
        dev_size = args.dev_size or int(model.config.get("training", {}).get("dev_size", 3000))
        sents = D.split_train_dev(read_bio(msra_file("train", args.data_dir)), dev_size)[1]
    enc = D.encode_sentences(tok, sents)
    t0 = time.time()
    scores = evaluate(model, enc, labels, progress=True)
    scores["seconds"] = round(time.time() - t0, 1)
    scores["split"] = args.split
    scores["sentences"] = len(sents)
    text = json.dumps(scores, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from .cli import evaluate_main

    sys.exit(evaluate_main())
