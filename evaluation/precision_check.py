"""INT8 against FP32 in process on the same texts: token-label agreement at the scored positions, and the encoders'
throughput one text at a time (tokenisation excluded).

    .venv/bin/python -m evaluation.precision_check --repository build/model_repository
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from export.paths import msra_file
from ner_pipeline import encode_texts

from .__main__ import load_bio
from .in_process import InProcessPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("NER_MODEL_REPOSITORY", "build/model_repository")))
    parser.add_argument("--file", type=Path, default=msra_file("test"))
    parser.add_argument("--output", type=Path, default=Path("build/evaluation/precision_check.json"))
    args = parser.parse_args()
    texts, _ = load_bio(args.file, None)
    fp32, int8 = InProcessPipeline(args.repository, "fp32"), InProcessPipeline(args.repository, "int8")
    same = total = 0
    seconds = {"fp32": 0.0, "int8": 0.0}
    for text in texts:
        batch = encode_texts(fp32.tokenizer, [text], fp32.window)
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        labels = {}
        for name, pipeline in (("fp32", fp32), ("int8", int8)):
            started = time.perf_counter()
            labels[name] = pipeline.session.run(["logits"], feed)[0].argmax(-1)
            seconds[name] += time.perf_counter() - started
        scored = batch.word_spans[..., 0] >= 0
        same += int((labels["fp32"][scored] == labels["int8"][scored]).sum())
        total += int(scored.sum())
    report = {"file": str(args.file), "texts": len(texts), "token_label_agreement": same / total,
              "fp32_texts_per_s": len(texts) / seconds["fp32"], "int8_texts_per_s": len(texts) / seconds["int8"],
              "int8_over_fp32_throughput": seconds["fp32"] / seconds["int8"]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
