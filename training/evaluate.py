"""In-process scoring: decode with the model's own CRF over first sub-tokens, map back to characters, seqeval.

``python -m training.evaluate --model models/default --split dev|test`` scores a checkpoint in process (FP32 torch,
whole sentences, no windowing: the GRU has no position limit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

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


def seqeval_scores(gold, pred) -> dict:
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    rep = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0, digits=6)
    out = {}
    for key, name in (("micro avg", "overall"), ("PER", "PER"), ("LOC", "LOC"), ("ORG", "ORG")):
        if key in rep:
            r = rep[key]
            out[name] = {"precision": 100 * r["precision"], "recall": 100 * r["recall"], "f1": 100 * r["f1-score"],
                         "support": int(r["support"])}
    return out


def evaluate(model, encoded, labels, **kw) -> dict:
    preds = predict(model, encoded, **kw)
    gold, pred = char_level(encoded, preds, labels)
    return seqeval_scores(gold, pred)


def main(argv=None):
    from .ensemble import load_tagger

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=os.environ.get("NER_MODEL_DIR", "models/default"))
    ap.add_argument("--data-dir", default=os.environ.get("NER_DATA_DIR"))
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--dev-size", type=int, default=None, help="default: the checkpoint's training config")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("NER_TRAIN_THREADS", "2")))
    ap.add_argument("--output", default=None, help="write the scores as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir) if args.data_dir else D.default_data_dir()
    model = load_tagger(args.model)
    labels = [model.config["id2label"][str(i)] for i in range(model.num_labels)]
    tok = D.load_tokenizer(args.model)
    if args.split == "test":
        sents = D.read_bio(data_dir / "msra" / "test.bio")
    else:
        dev_size = args.dev_size or int(model.config.get("training", {}).get("dev_size", 3000))
        sents = D.split_train_dev(D.read_bio(data_dir / "msra" / "train.bio"), dev_size)[1]
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
    sys.exit(main())
