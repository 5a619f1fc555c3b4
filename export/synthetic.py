"""A tiny BERT token classifier that really tags a known lexicon, trained in seconds on synthetic sentences.

Random weights tag nothing, which proves nothing about offsets; this model learns to tag the entities of
``LEXICON`` wherever they stand, next to emoji, full-width letters, combining marks, tabs or unknown characters.
It is the stand-in default model for tests and for a machine without a trained checkpoint.

    python -m export.synthetic --output build/checkpoints/tiny-crf --scheme BIO --crf
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np

from ner_client.settings import Setting, SettingGroup, boolean, positive_int
from ner_pipeline.tagging import parse_label, scheme_labels

from ner_model.data import vocab_file, write_tokenizer_files
from .repository import REPO_ROOT

LEXICON = {
    "PER": ["张三", "李四", "王小明", "欧阳娜娜"],
    "LOC": ["北京", "上海", "长江", "乌鲁木齐"],
    "ORG": ["清华大学", "联合国", "微软公司", "Microsoft"],
}
_FILLER_CHARS = "我们他她的是了在有和这个为来到说年时就要也会对于把被让从向往去还又很都可以工作生活学习今天昨日明中国人民大小多少" \
    "好坏新旧高低长短东西南北方面问题发展经济社会文化历史研究报道记者表示认为已经开始进行"
_AWKWARD = ["😀", "👨\u200d👩", "Ｆｕｌｌ", "ＡＢＣ", "e\u0301", "\u200b", " ", "\t", "\n", "123", "2024年", "abc", "，",
            "。", "！", "𠀀", "\u0000", "\u0007", "©", "Hello", "x", "\u3000", "\u00a0", "   ", "\n\n\n"]
_LEXICON_CHARS = set("".join(w for words in LEXICON.values() for w in words))
FILLER = [c for c in _FILLER_CHARS if c not in _LEXICON_CHARS] + _AWKWARD


def labels_for(scheme: str) -> list[str]:
    return scheme_labels(scheme, sorted(LEXICON))


def word_tags(n_words: int, entity_type: str, scheme: str) -> list[str]:
    if scheme == "BIO":
        return [f"B-{entity_type}"] + [f"I-{entity_type}"] * (n_words - 1)
    if n_words == 1:
        return [f"S-{entity_type}"]
    middle = "I" if scheme == "BIOES" else "M"
    return [f"B-{entity_type}"] + [f"{middle}-{entity_type}"] * (n_words - 2) + [f"E-{entity_type}"]


def _glues(left: str, right: str) -> bool:
    """Whether two characters would fall into one word: a Latin name must stay a word of its own."""
    return left.isascii() and left.isalnum() and right.isascii() and right.isalnum()


def random_sentence(rng: random.Random, max_segments: int) -> tuple[str, list[tuple[int, int, str]]]:
    """A sentence and its entities as (start, end, type) in code points."""
    text, entities = "", []
    for _ in range(rng.randint(1, max_segments)):
        if rng.random() < 0.3:
            entity_type = rng.choice(sorted(LEXICON))
            word = rng.choice(LEXICON[entity_type])
            if text and _glues(text[-1], word[0]):
                text += " "
            entities.append((len(text), len(text) + len(word), entity_type))
            text += word
        else:
            filler = "".join(rng.choice(FILLER) for _ in range(rng.randint(1, 6)))
            if entities and entities[-1][1] == len(text) and _glues(text[-1], filler[0]):
                text += " "
            text += filler
    return text, entities


def constraint_crf(labels: list[str], scheme: str, penalty: float = -8.0) -> dict[str, np.ndarray]:
    """CRF parameters that only forbid invalid moves: a valid CRF, by construction, for a softmax-trained head."""
    tags = [parse_label(label) for label in labels]
    closing = scheme != "BIO"
    n = len(tags)
    transitions = np.zeros((n, n), dtype=np.float32)
    start = np.zeros(n, dtype=np.float32)
    end = np.zeros(n, dtype=np.float32)
    for j, nxt in enumerate(tags):
        if nxt.prefix in ("I", "E"):
            start[j] = penalty
        for i, prev in enumerate(tags):
            continuing = nxt.prefix in ("I", "E")
            if continuing and not (prev.prefix in ("B", "I") and prev.type == nxt.type):
                transitions[i, j] = penalty
            if closing and not continuing and prev.prefix in ("B", "I"):
                transitions[i, j] = penalty  # an open span must be closed by E first
    if closing:
        for i, prev in enumerate(tags):
            if prev.prefix in ("B", "I"):
                end[i] = penalty
    return {"transitions": transitions, "start_transitions": start, "end_transitions": end}


def build(output: Path, scheme: str = "BIO", crf: bool = True, steps: int = 300, seed: int = 0,
          vocab: Path | None = None, verbose: bool = True) -> Path:
    """Trains and writes the checkpoint; returns ``output``."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm
    from transformers import BertConfig, BertForTokenClassification

    from .tokenizer_files import load_tokenizer

    output.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(output, vocab or vocab_file())
    tokenizer = load_tokenizer(output)[0].backend_tokenizer  # as the exporter will build it
    labels = labels_for(scheme)
    label_id = {label: i for i, label in enumerate(labels)}

    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = BertConfig(
        vocab_size=21128, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=512, id2label=dict(enumerate(labels)), label2id=label_id,
    )
    model = BertForTokenClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def example(max_segments: int):
        text, entities = random_sentence(rng, max_segments)
        encoding = tokenizer.encode(text)  # with [CLS] and [SEP]
        targets = [-100] * len(encoding.ids)
        seen_words = set()
        for position, (word, (start, _)) in enumerate(zip(encoding.word_ids, encoding.offsets)):
            if word is None or word in seen_words:
                continue
            seen_words.add(word)
            tag = "O"
            for e_start, e_end, e_type in entities:
                if e_start <= start < e_end:
                    words_in_entity = sorted({w for w, (s, _) in zip(encoding.word_ids, encoding.offsets)
                                              if w is not None and e_start <= s < e_end})
                    tag = word_tags(len(words_in_entity), e_type, scheme)[words_in_entity.index(word)]
            targets[position] = label_id[tag]
        return encoding.ids[:512], targets[:512]

    model.train()
    progress = tqdm(range(steps), desc=f"training tiny {scheme}{'+CRF' if crf else ''}", disable=not verbose)
    for step in progress:
        long_batch = step % 10 == 9  # some long rows so that late positions are trained too
        batch = [example(120 if long_batch else 12) for _ in range(4 if long_batch else 16)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        target = torch.full_like(ids, -100)
        for row, (row_ids, row_targets) in enumerate(batch):
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            mask[row, : len(row_ids)] = 1
            target[row, : len(row_targets)] = torch.tensor(row_targets)
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    model.save_pretrained(output)
    if crf:
        save_file({k: torch.from_numpy(v) for k, v in constraint_crf(labels, scheme).items()},
                  str(output / "crf.safetensors"))
    return output


SETTINGS = SettingGroup("NER_EXPORT_TINY_", (
    Setting("output", REPO_ROOT / "build" / "checkpoints" / "tiny", "checkpoint directory to write", type=Path,
            shown="build/checkpoints/tiny"),
    Setting("scheme", "BIO", "label scheme", choices=("BIO", "BIOES", "BMES")),
    Setting("crf", True, "a CRF layer (the constraint CRF of the scheme) after the classifier", type=boolean),
    Setting("steps", 300, "training steps", type=positive_int),
    Setting("seed", 0, "random seed", type=int),
), title="python -m export.synthetic")


def main(argv=None) -> int:
    args = SETTINGS.parse(argv, prog="python -m export.synthetic", description=__doc__)
    started = time.perf_counter()
    build(args.output, args.scheme, args.crf, args.steps, args.seed)
    print(f"wrote {args.output} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
