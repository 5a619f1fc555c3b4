"""INT8 against FP32 in process on the same texts: agreement of the decoder's labels (CRF Viterbi, or argmax) at the
scored positions (the exporter's ``label_agreement``), and the encoders' throughput one text at a time (tokenisation excluded).

    python -m evaluation.precision_check --repository build/model_repository
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from export.quantize import label_agreement
from ner_pipeline import encode_texts

from .in_process import InProcessPipeline
from .served import load_bio


def precision_check(repository: Path, path: Path) -> dict:
    texts, _ = load_bio(path)
    fp32, int8 = InProcessPipeline(repository, "fp32"), InProcessPipeline(repository, "int8")
    rows = []
    for text in texts:
        batch = encode_texts(fp32.tokenizer, [text], fp32.window)
        rows.append((batch.input_ids, batch.attention_mask, batch.word_spans[..., 0] >= 0))
    seconds = {}
    for name, pipeline in (("fp32", fp32), ("int8", int8)):
        started = time.perf_counter()
        for input_ids, attention_mask, _ in rows:
            pipeline.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})
        seconds[name] = time.perf_counter() - started
    report = {"file": str(path), "texts": len(texts),
              "token_label_agreement": label_agreement(fp32.session, int8.session, rows,
                                                       tag=lambda emissions: fp32.decoder.tag_window(emissions)[0]),
              "fp32_texts_per_s": len(texts) / seconds["fp32"], "int8_texts_per_s": len(texts) / seconds["int8"],
              "int8_over_fp32_throughput": seconds["fp32"] / seconds["int8"]}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    from .cli import precision_check_main

    sys.exit(precision_check_main())
