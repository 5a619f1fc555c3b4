"""The default model's Traditional-to-Simplified fold (``LacBiGruCrf.simplified_ids``), and the command that adds it to a
checkpoint trained without it (no weight changes):

    python -m training.fold models/default

A vocabulary character folds to OpenCC's Simplified form of it when that form is in the vocabulary, when it is not
itself a Simplified character (OpenCC's Simplified-to-Traditional conversion keeps it) and when the Simplified
training text never uses it: 乾 stays, as in 乾隆. One character for one, so offsets and word positions do not move.
A table cannot undo OpenCC's phrase-level choices (its Simplified-to-Traditional conversion writes 了 as 瞭 in some
phrases, and 瞭 stays).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch

from ner_client.settings import Setting, SettingGroup
from ner_model.data import DATA_DIR, msra_file, read_bio

CJK = ("\u3400", "\u9fff")  # the vocabulary's single-character CJK tokens (Extension A and the unified block)


def fold_table(vocab_lines: list[str], used_characters: set[str]) -> tuple[torch.Tensor, int]:
    """The id-to-id table (identity where nothing folds) and how many ids fold; folding it twice changes nothing."""
    import opencc

    to_simplified, to_traditional = opencc.OpenCC("t2s").convert, opencc.OpenCC("s2t").convert
    index = {token: i for i, token in enumerate(vocab_lines)}
    table = torch.arange(len(vocab_lines))
    for i, token in enumerate(vocab_lines):
        if len(token) != 1 or not CJK[0] <= token <= CJK[1] or token in used_characters:
            continue
        simplified = to_simplified(token)
        if simplified != token and simplified in index and to_traditional(token) == token:
            table[i] = index[simplified]
    table = table[table]  # a character whose Simplified form folds again (none in OpenCC 1.4.2's tables) folds once
    return table, int((table != torch.arange(len(vocab_lines))).sum())


def used_characters(sentences: Iterable) -> set[str]:
    """The characters of training sentences (``(characters, tags)`` pairs)."""
    return {c for chars, _ in sentences for c in chars}


def fold_into(model, vocab_lines: list[str], sentences: Iterable) -> None:
    """Switches the fold on in a ``LacBiGruCrf`` (and its config) with the table of this vocabulary and text."""
    import opencc

    table, folded = fold_table(vocab_lines, used_characters(sentences))
    if not model.fold_traditional:
        model.fold_traditional = True
        model.register_buffer("simplified_ids", table)
    else:
        model.simplified_ids.copy_(table)
    model.config["fold_traditional"] = True
    model.config["fold"] = {"source": f"opencc=={opencc.__version__} t2s, character by character",
                            "characters": folded}
    print(f"fold: {folded} Traditional characters of the vocabulary read as Simplified", flush=True)


def add_to_checkpoint(directory: Path, data_dir) -> None:
    from ner_model.architecture import MODEL_TYPE, LacBiGruCrf

    from . import data as D
    from .cli import SETTINGS

    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise SystemExit(f"{directory} is not a {MODEL_TYPE} checkpoint")
    model = LacBiGruCrf.from_pretrained(directory)
    dev_size = int(config.get("training", {}).get("dev_size", SETTINGS["dev_size"].default))
    train, _ = D.split_train_dev(read_bio(msra_file("train", data_dir)), dev_size)
    fold_into(model, D.vocab_lines(directory / "vocab.txt"), train)
    model.save_pretrained(directory)


FOLD_SETTINGS = SettingGroup("NER_TRAIN_", (
    Setting("checkpoint", None, "checkpoint of the default architecture (its model.safetensors and config.json are "
            "rewritten)", type=Path, env="NER_CHECKPOINT", positional=True, required=True),
    DATA_DIR,
), "Traditional-to-Simplified fold")


def main(argv=None) -> int:
    args = FOLD_SETTINGS.parse(argv, prog="python -m training.fold", description=__doc__)
    add_to_checkpoint(args.checkpoint, args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
