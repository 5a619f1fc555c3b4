"""The checkpoint's tokenizer as a Hugging Face fast tokenizer, with the options its own files set.

The served tokenizer is this object's ``tokenizer.json``, so every option must be in its normalizer and
pre-tokenizer, not only in ``tokenizer_config.json``:

- WordPiece (BERT-style) checkpoints with ``vocab.txt`` are built from ``vocab.txt`` and the ``do_lower_case``,
  ``tokenize_chinese_chars`` and ``strip_accents`` of ``tokenizer_config.json``. A missing option takes the default
  of the ``BertTokenizer`` these checkpoints were saved with (``do_lower_case`` true), not the default of the
  installed transformers (v5 defaults ``do_lower_case`` to false). ModelScope builds its tokenizer the same way
  (``modelscope/preprocessors/nlp/transformers_tokenizer.py``: ``AutoTokenizer.from_pretrained(model_dir)``).
- ``is_split_into_words`` (``tokenizer_config.json``, or the preprocessor section of ``configuration.json``): the
  ModelScope token-classification preprocessor then encodes every character of the text on its own, whitespace
  included (an empty encoding becomes ``[UNK]``), and scores one position per character
  (``modelscope/preprocessors/nlp/token_classification_preprocessor.py``). The served tokenizer does the same: every
  character is a word and whitespace is a word that encodes to ``[UNK]``. Control characters and combining marks
  that the BERT normalizer removes get no position (ModelScope gives them an ``[UNK]``).
- ``whitespace_token`` (``tokenizer_config.json``, a token of ``vocab.txt``): every whitespace character (Unicode
  White_Space: spaces, tabs, line breaks, U+3000, NBSP) becomes that token, one word per character at its own
  offset, so the model sees where text was broken. Without it BERT's normalizer gives whitespace no position and
  ``张三 李四`` reads as ``张三李四``. The token's own text, typed by a user, stays text: only whitespace becomes
  the token.
- Checkpoints with only ``tokenizer.json`` load it through ``AutoTokenizer``.

The serving pipeline writes ``[CLS]`` = 101, ``[SEP]`` = 102 and ``[PAD]`` = 0 itself (``ner_pipeline/windows.py``),
so a tokenizer with other ids is refused here rather than served wrong.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ner_pipeline.windows import CLS_ID, PAD_ID, SEP_ID

from .errors import CheckpointError
from .labels import MODELSCOPE_CONFIGURATION, read_json

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
# Tokenizer classes that are BERT's WordPiece with BERT's normalizer and pre-tokenizer.
WORDPIECE_CLASSES = {"BertTokenizer", "BertTokenizerFast", "SbertTokenizer", "SbertTokenizerFast", "ElectraTokenizer",
                     "ElectraTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast"}
BERT_DEFAULTS = {"do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None}
SPECIAL_TOKENS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _special_tokens(directory: Path, tokenizer_config: dict) -> dict:
    found = {}
    sources = [tokenizer_config]
    if (directory / SPECIAL_TOKENS_MAP).exists():
        sources.insert(0, read_json(directory / SPECIAL_TOKENS_MAP))
    for source in sources:
        for name in SPECIAL_TOKENS:
            value = source.get(name)
            if isinstance(value, dict):  # AddedToken serialisation
                value = value.get("content")
            if isinstance(value, str):
                found[name] = value
    return found


def _split_into_words(directory: Path, tokenizer_config: dict) -> bool:
    value = tokenizer_config.get("is_split_into_words")
    configuration = directory / MODELSCOPE_CONFIGURATION
    if configuration.exists():
        preprocessor = read_json(configuration).get("preprocessor")
        if isinstance(preprocessor, dict) and "is_split_into_words" in preprocessor:
            value = preprocessor["is_split_into_words"]  # a preprocessor kwarg wins over the tokenizer's
    return bool(value)


def _every_character_a_word(tokenizer, options: dict) -> None:
    """ModelScope's is_split_into_words: one word per character, whitespace a word of its own ([UNK])."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    backend = tokenizer.backend_tokenizer
    # No padding of CJK characters with spaces: every character is split off anyway, and an inserted space would
    # become a word of its own.
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                    strip_accents=options["strip_accents"],
                                                    lowercase=options["do_lower_case"])
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")  # (?m): "." matches "\n"


# What each whitespace character becomes inside the normalizer: a control character, so that the pass which deletes
# control characters (BERT's clean_text) runs first and removes any a user typed in, and only whitespace reaches it.
WHITESPACE_MARK = "\x01"
# The whitespace token's name in the built tokenizer's vocabulary: the added token that normalises to the mark.
WHITESPACE_NAME = " "


def _whitespace_as(tokenizer, token: str) -> None:
    """Every whitespace character becomes ``token``, a word of its own at that character's offset.

    The token's text never appears: it is matched as the added token ``WHITESPACE_NAME``, whose normalised form is
    the mark that only whitespace normalises to, and the vocabulary knows the token's id by that name. So a user who
    types "[unused1]" gets the characters they typed, not a space."""
    from tokenizers import AddedToken, Regex, models, normalizers

    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    if token not in vocab:
        raise CheckpointError(f"whitespace_token {token!r} is not a token of the vocabulary")
    backend = tokenizer.backend_tokenizer
    bert, wordpiece = backend.normalizer, backend.model
    # Whitespace becomes a plain space first, as clean_text would delete the ones that are also control characters
    # (U+0085); each replacement is one character for one, so every offset maps back to its own character.
    backend.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(r"\s"), " "),
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False),
        normalizers.Replace(" ", WHITESPACE_MARK),
        normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=bert.handle_chinese_chars,
                                   strip_accents=bert.strip_accents, lowercase=bert.lowercase),
    ])
    vocab[WHITESPACE_NAME] = vocab.pop(token)
    backend.model = models.WordPiece(vocab, unk_token=wordpiece.unk_token,
                                     continuing_subword_prefix=wordpiece.continuing_subword_prefix,
                                     max_input_chars_per_word=wordpiece.max_input_chars_per_word)
    backend.add_tokens([AddedToken(WHITESPACE_NAME, normalized=True, single_word=False, lstrip=False, rstrip=False)])


def vocabulary(tokenizer, whitespace_token: str | None) -> dict[str, int]:
    """The tokenizer's token ids by the names its vocabulary file gives them: the whitespace token under its own name,
    not under the name it is matched by. Two tokenizers with equal vocabularies read the same embedding rows, whichever
    of them maps whitespace to a token."""
    vocab = tokenizer.get_vocab()
    if whitespace_token and WHITESPACE_NAME in vocab:
        vocab[whitespace_token] = vocab.pop(WHITESPACE_NAME)
    return vocab


def load_tokenizer(directory: Path, vocab_rows: int | None = None):
    """The fast tokenizer and the options it was built with; ``vocab_rows``: the model's embedding rows."""
    directory = Path(directory)
    tokenizer_config = read_json(directory / TOKENIZER_CONFIG) if (directory / TOKENIZER_CONFIG).exists() else {}
    tokenizer_class = tokenizer_config.get("tokenizer_class")
    vocab = directory / "vocab.txt"
    options: dict = {"source": None}
    if vocab.exists() and (tokenizer_class is None or tokenizer_class in WORDPIECE_CLASSES):
        from transformers import BertTokenizer  # the tokenizers-backed (fast) class in transformers 5

        for name, default in BERT_DEFAULTS.items():
            options[name] = tokenizer_config.get(name, default)
        options["split_into_words"] = _split_into_words(directory, tokenizer_config)
        options["source"] = f"{vocab.name} + {TOKENIZER_CONFIG if tokenizer_config else 'BertTokenizer defaults'}"
        options["source_reason"] = (f"{'tokenizer class ' + tokenizer_class if tokenizer_class else 'no tokenizer class'}"
                                    ": a WordPiece vocabulary, built with its options as BertTokenizer builds it")
        if (directory / "tokenizer.json").exists():
            options["source_reason"] += "; the tokenizer.json beside it is not used"
        tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=options["do_lower_case"],
                                  tokenize_chinese_chars=options["tokenize_chinese_chars"],
                                  strip_accents=options["strip_accents"],
                                  **_special_tokens(directory, tokenizer_config))
        if options["split_into_words"]:
            _every_character_a_word(tokenizer, options)
        options["whitespace_token"] = tokenizer_config.get("whitespace_token")
        if options["whitespace_token"]:
            _whitespace_as(tokenizer, options["whitespace_token"])
    elif (directory / "tokenizer.json").exists() or (vocab.exists() and tokenizer_class):
        from transformers import AutoTokenizer

        options["source"] = "tokenizer.json" if (directory / "tokenizer.json").exists() else tokenizer_class
        options["source_reason"] = (f"tokenizer class {tokenizer_class} is not WordPiece" if vocab.exists() else
                                    "no vocab.txt") + ": loaded by AutoTokenizer"
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        except (ValueError, OSError) as err:
            raise CheckpointError(f"{directory}: the tokenizer files do not load: {err}") from None
    else:
        files = sorted(p.name for p in directory.iterdir())
        raise CheckpointError(f"{directory}: no tokenizer files (vocab.txt or tokenizer.json); found {files}")

    if not getattr(tokenizer, "is_fast", False):
        raise CheckpointError(f"{directory}: no fast tokenizer could be built from the tokenizer files")
    if len(tokenizer) < 1000:
        raise CheckpointError(f"{directory}: the tokenizer has only {len(tokenizer)} tokens; is vocab.txt there?")
    ids = {"[CLS]": tokenizer.cls_token_id, "[SEP]": tokenizer.sep_token_id, "[PAD]": tokenizer.pad_token_id}
    if ids != {"[CLS]": CLS_ID, "[SEP]": SEP_ID, "[PAD]": PAD_ID}:
        raise CheckpointError(f"{directory}: the tokenizer's special ids are {ids}; the serving pipeline writes "
                              f"[CLS]={CLS_ID}, [SEP]={SEP_ID}, [PAD]={PAD_ID} (a BERT Chinese vocabulary)")
    if vocab_rows is not None:
        largest = max(tokenizer.get_vocab().values())
        if largest >= vocab_rows:
            raise CheckpointError(f"{directory}: the tokenizer has ids up to {largest} but the model's word "
                                  f"embeddings have only {vocab_rows} rows")
    return tokenizer, options


# tokenizers (Rust) prints this to file descriptor 1 whenever it serialises a vocabulary with ids that no token has,
# with no setting to turn it off.
_HOLES_WARNING = b"The OrderedVocab you are attempting to save contains holes"


def repeated_tokens(tokenizer, directory: Path) -> str | None:
    """One line explaining the ids without a token, when they are exactly the earlier lines of tokens that
    ``vocab.txt`` repeats (bert-base-chinese's has 53 such lines); None when there are none or another cause."""
    vocab_file = Path(directory) / "vocab.txt"
    vocab = tokenizer.get_vocab()
    ids = set(vocab.values())
    holes = [i for i in range(max(ids) + 1) if i not in ids]
    if not holes or not vocab_file.exists():
        return None
    lines = vocab_file.read_text(encoding="utf-8").split("\n")
    last = {token: i for i, token in enumerate(lines)}
    if not all(i < len(lines) and vocab.get(lines[i]) == last[lines[i]] != i for i in holes):
        return None
    example = lines[holes[0]]
    return (f"vocab.txt repeats {len(holes)} tokens (e.g. {example!r} on lines {holes[0]} and {last[example]}, "
            "counting from 0); each takes the id of its last line, as BERT's own vocabulary loader gives it: every id "
            f"is still its line number, and the {len(holes)} ids of the earlier lines are unused (tokenizers' "
            "\"holes\" warning about them is left out)")


@contextmanager
def _stdout_without(prefix: bytes):
    """Drops the lines starting with ``prefix`` that native code writes to file descriptor 1 meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.read().splitlines(keepends=True) if not line.startswith(prefix))
            if kept:
                os.write(1, kept)


def save_tokenizer(tokenizer, target: Path, checkpoint_dir: Path) -> str | None:
    """Writes the tokenizer's files (``tokenizer.json`` among them) to ``target``. Returns the explanation of a
    vocabulary's repeated tokens (``repeated_tokens``), in which case tokenizers' own warning about them, which says
    the vocabulary "could be corrupted", is left out; any other output of the save is kept."""
    note = repeated_tokens(tokenizer, checkpoint_dir)
    if note is None:
        tokenizer.save_pretrained(str(target))
        return None
    with _stdout_without(_HOLES_WARNING):
        tokenizer.save_pretrained(str(target))
    return note
