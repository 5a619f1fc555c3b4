"""The robustness benchmark (docs/robustness.md): MSRA dev or test, clean and perturbed by evaluation.perturb, and the
hand-written social-media fixture, scored through the served ensembles and in process; F1 overall and per type, and
the share of predicted entities that hold an inserted piece or cross a sentence end, a line break or a seam. The
fixture is also scored for Baidu LAC's untrained tagger, the yardstick the default model must beat on other text.

    python -m evaluation.robustness --url 127.0.0.1:8001 --limit 1000 --in-process build/model_repository
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from ner_model.perturb import Perturbed, Span
from ner_model.scoring import score, spans_from_tags

from . import perturb as P

CLEAN, FIXTURE_ROW = "clean", "fixture"


def load_fixture(path: Path) -> list[tuple[str, tuple[Span, ...]]]:
    """The fixture's texts and their entities, one JSON object a line: {"text", "entities": [{"type", "start",
    "end"}]}, offsets in code points."""
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            items.append((item["text"], tuple((e["type"], e["start"], e["end"]) for e in item["entities"])))
    return items


def load_sentences(split: str, data_dir: Path | None = None, dev_size: int = 3000, file: Path | None = None,
                   limit: int = 0) -> tuple[str, list[tuple[str, tuple[Span, ...]]]]:
    """(where they come from, the sentences as (text, gold spans)): ``file`` if given, else MSRA test, or dev carved
    from MSRA train as training carves it."""
    from ner_model.data import msra_file, read_bio
    from training.data import split_train_dev

    if file:
        source, sentences = str(file), read_bio(file)
    elif split == "test":
        source, sentences = str(msra_file("test", data_dir)), read_bio(msra_file("test", data_dir))
    else:
        source = f"{msra_file('train', data_dir)} (last {dev_size} sentences: dev)"
        sentences = split_train_dev(read_bio(msra_file("train", data_dir)), dev_size)[1]
    if limit:
        sentences = sentences[:limit]
    return source, [("".join(chars), tuple((t, s, e) for _, t, s, e in sorted(spans_from_tags(0, tags),
                                                                               key=lambda x: x[2])))
                    for chars, tags in sentences]


def row_name(kind: str, rate: float | None = None) -> str:
    return kind if rate is None else f"{kind} {100 * rate:g}%"


def build_rows(sentences, fixture, kinds: Sequence[str], rates: Sequence[float], seed: int,
               join_size: int = 4) -> dict[str, list[Perturbed]]:
    """Every row's texts: clean, each kind at each rate (``joined`` also at no rate, ``traditional`` only so), the
    fixture."""
    rows = {CLEAN: [Perturbed(text, spans) for text, spans in sentences]}
    for kind in kinds:
        if kind == "traditional":
            import opencc

            rows[row_name(kind)] = P.corpus(sentences, kind, 0.0, seed, convert=opencc.OpenCC("s2t").convert)
            continue
        if kind == "joined":
            rows[row_name(kind)] = P.corpus(sentences, kind, 0.0, seed, join_size)
        for rate in rates:
            rows[row_name(kind, rate)] = P.corpus(sentences, kind, rate, seed, join_size)
    if fixture:
        rows[FIXTURE_ROW] = [Perturbed(text, spans) for text, spans in fixture]
    return rows


def score_row(texts: list[Perturbed], entities_per_text: list[list[dict]]) -> dict:
    """F1 overall and per type, and how many predicted entities are stray (``perturb.stray``)."""
    gold = {(i, t, s, e) for i, p in enumerate(texts) for t, s, e in p.spans}
    predicted = {(i, e["type"], e["start"], e["end"]) for i, entities in enumerate(entities_per_text)
                 for e in entities}
    strays = sum(P.stray((s, e), texts[i]) for i, _, s, e in predicted)
    return {**score(gold, predicted), "stray": strays, "stray_share": strays / len(predicted) if predicted else 0.0}


def _split(flat: list, rows: dict[str, list]) -> dict[str, list]:
    out, at = {}, 0
    for name, texts in rows.items():
        out[name] = flat[at:at + len(texts)]
        at += len(texts)
    return out


def benchmark(sentences, fixture, models: Sequence[str], url: str | None = None, protocol: str | None = None,
              batch_size: int = 16, in_process: Path | None = None, kinds: Sequence[str] = (),
              rates: Sequence[float] = (0.05, 0.2), seed: int = 0, join_size: int = 4) -> dict:
    from .served import served_entities

    rows = build_rows(sentences, fixture, kinds, rates, seed, join_size)
    texts = [p.text for row in rows.values() for p in row]
    report = {"sentences": len(sentences), "seed": seed, "kinds": list(kinds), "rates": list(rates),
              "join_size": join_size, "url": url, "protocol": protocol,
              "rows": {name: {"texts": len(row), "gold_entities": sum(len(p.spans) for p in row),
                              "inserted_pieces": sum(len(p.inserted) for p in row)} for name, row in rows.items()},
              "models": {}}
    runs = {model: (lambda model=model: served_entities(url, protocol, model, texts, batch_size)) for model in models}
    if in_process:
        from .in_process import fp32_entities

        runs["in_process_fp32"] = lambda: fp32_entities(in_process, texts)
    for name, run in runs.items():
        predicted = _split(run(), rows)
        report["models"][name] = {row: score_row(rows[row], predicted[row]) for row in rows}
    if fixture:
        from .other_sources import LAC_BASELINE, lac_entities

        # The yardstick for text of other sources: the untrained tagger whose weights the default model starts from.
        # On MSRA's rows it would measure MSRA's conventions rather than robustness, so the fixture alone.
        fixture_row = rows[FIXTURE_ROW]
        report["baselines"] = {LAC_BASELINE: {FIXTURE_ROW: score_row(
            fixture_row, lac_entities([p.text for p in fixture_row]))}}
    return report


def table(rows: dict[str, dict], info: dict[str, dict]) -> str:
    types = sorted({t for scores in rows.values() for t in scores["per_type"]})
    clean = rows.get(CLEAN, {}).get("overall", {}).get("f1")
    header = f"{'row':<14}{'texts':>6}{'F1':>8}" + "".join(f"{t:>8}" for t in types) + f"{'ΔF1':>8}{'stray %':>9}"
    lines = [header]
    for name, scores in rows.items():
        f1 = scores["overall"]["f1"]
        per_type = "".join(f"{100 * scores['per_type'][t]['f1']:8.2f}" if t in scores["per_type"] else f"{'-':>8}"
                           for t in types)
        delta = f"{100 * (f1 - clean):+8.2f}" if clean is not None and name not in (CLEAN, FIXTURE_ROW) else f"{'':>8}"
        lines.append(f"{name:<14}{info[name]['texts']:>6}{100 * f1:8.2f}{per_type}{delta}"
                     f"{100 * scores['stray_share']:9.3f}")
    return "\n".join(lines)


def print_report(report: dict) -> None:
    print(f"{report['source']}: {report['sentences']} sentences; seed {report['seed']}; rates "
          f"{', '.join(f'{100 * r:g}%' for r in report['rates'])}; joined texts of {report['join_size']} sentences")
    for model, rows in report["models"].items():
        print(f"\n{model}\n{table(rows, report['rows'])}")
    for name, rows in report.get("baselines", {}).items():
        print(f"\n{name} (Baidu LAC as it ships, the default model's starting weights; the fixture only)\n"
              f"{table(rows, report['rows'])}")


if __name__ == "__main__":
    from .cli import robustness_main

    sys.exit(robustness_main())
