"""Checks of one request's tensors in the Python-backend models, beyond the datatypes and ranks Triton enforces.

A request that fails gets its own error (:class:`InputRejected`, whose message names the input and the offending
value) while the other requests of the same ``execute()`` are answered: the encoder pools the rows of all its queued
requests into shared ONNX Runtime calls, so an id outside the vocabulary would otherwise fail them all, and a negative
id or a mask value other than 0/1 would silently change the answer (ONNX ``Gather`` reads negative indices from the
end; the lexicon features multiply by the mask). The checks are vectorised: they run on every request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .windows import InputRejected

# Ops whose output holds the values (the ids) or the shape (the tables, quantized or not) of their first input.
_SAME_VALUES = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
_SAME_SHAPE = frozenset({"Cast", "Identity", "DequantizeLinear", "QuantizeLinear"})


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))


def embedding_rows(onnx_path: str) -> int | None:
    """The vocabulary size of an encoder: the fewest rows among the embedding tables (initializers, as they are or
    dequantized) that ``Gather`` reads at ``input_ids``; None when the graph has no such table."""
    import onnx  # the export reads it; the served encoder gets the number as a parameter

    graph = onnx.load(onnx_path).graph
    rows = {tensor.name: int(tensor.dims[0]) for tensor in graph.initializer if tensor.dims}
    ids, tables = {"input_ids"}, []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            rows[node.output[0]] = int(node.attribute[0].t.dims[0])
        elif node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in ids and node.input[0] in rows:
            tables.append(rows[node.input[0]])
        if node.op_type in _SAME_VALUES and node.input and node.input[0] in ids:
            ids.update(node.output)
        if node.op_type in _SAME_SHAPE and node.input and node.input[0] in rows:
            rows[node.output[0]] = rows[node.input[0]]
    return min(tables) if tables else None


@dataclass(frozen=True)
class EncoderInputs:
    """What the encoder accepts in one request: ``input_ids`` and ``attention_mask`` of one shape [rows, width],
    width at most ``max_width`` (when known), ids in [0, ``vocab_size``) (when known), mask values 0 or 1."""

    vocab_size: int | None = None
    max_width: int | None = None

    def check(self, ids: np.ndarray, mask: np.ndarray) -> None:
        if ids.dtype != np.int64 or mask.dtype != np.int64:
            raise InputRejected(f"input_ids ({ids.dtype}) and attention_mask ({mask.dtype}) must be int64")
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise InputRejected(
                f"input_ids {list(ids.shape)} and attention_mask {list(mask.shape)} must share one 2-D shape")
        if self.max_width is not None and ids.shape[1] > self.max_width:
            raise InputRejected(f"input_ids has {ids.shape[1]} positions per row, over the longest window "
                                f"{self.max_width}")
        # As unsigned, a negative value is larger than any limit: one comparison checks both ends.
        bad_mask = mask.view(np.uint64) > 1
        if bad_mask.any():
            at = _first(bad_mask)
            raise InputRejected(f"attention_mask holds {int(mask[at])} at {list(at)}; its values must be 0 or 1")
        if self.vocab_size is not None:
            bad_ids = ids.view(np.uint64) >= self.vocab_size
            if bad_ids.any():
                at = _first(bad_ids)
                raise InputRejected(f"input_ids holds {int(ids[at])} at {list(at)}, outside the vocabulary "
                                    f"[0, {self.vocab_size})")


def decoder_texts(logits: np.ndarray, word_spans: np.ndarray, text_index: np.ndarray, source_text: np.ndarray,
                  num_labels: int) -> list[str]:
    """The texts of one decoder request, once its tensors are checked against each other and against the texts;
    :class:`InputRejected` names the first problem. Rows are encoder windows: logits [rows, L, num_labels], word_spans
    [rows, L, 2] (a word's code-point span in its text, or (-1, -1)), text_index [rows, 1] numbering the texts 0 to
    n - 1, source_text [rows, 1] holding each text's UTF-8 bytes on its first row."""
    if logits.ndim != 3 or logits.shape[2] != num_labels:
        raise InputRejected(f"logits {list(logits.shape)} must be [rows, positions, {num_labels}]")
    rows, width = logits.shape[:2]
    if word_spans.shape != (rows, width, 2):
        raise InputRejected(f"word_spans {list(word_spans.shape)} must be [{rows}, {width}, 2], as logits "
                            f"{list(logits.shape)}")
    for name, tensor in (("text_index", text_index), ("source_text", source_text)):
        if tensor.shape != (rows, 1):
            raise InputRejected(f"{name} {list(tensor.shape)} must be [{rows}, 1], one per row of logits")
    if not np.isfinite(logits).all():
        at = _first(~np.isfinite(logits))
        raise InputRejected(f"logits holds {logits[at]} at {list(at)}; scores must be finite")
    index = text_index.reshape(-1)
    if rows and index.min() < 0:
        row = int(np.argmax(index < 0))
        raise InputRejected(f"text_index holds {int(index[row])} at row {row}; texts are numbered from 0")
    present, first_rows = np.unique(index, return_index=True)
    if len(present) and present[-1] != len(present) - 1:
        missing = int(np.setdiff1d(np.arange(present[-1]), present)[0])
        raise InputRejected(f"text_index numbers texts up to {int(present[-1])} but no row belongs to text {missing}")
    texts = []
    for text, row in enumerate(first_rows):
        raw = source_text[row, 0]
        try:
            texts.append(raw if isinstance(raw, str) else raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise InputRejected(f"source_text of text {text} (row {int(row)}) is not valid UTF-8 ({err.reason} at "
                                f"byte {err.start})") from None
    starts, ends = word_spans[..., 0], word_spans[..., 1]
    length = np.array([len(text) for text in texts], dtype=np.int64)[index][:, None] if rows else np.zeros((0, 1))
    scored = starts >= 0
    bad = np.where(scored, (ends < starts) | (ends > length), (starts != -1) | (ends != -1))
    if bad.any():
        row, position = _first(bad)
        span = word_spans[row, position].tolist()
        raise InputRejected(f"word_spans holds {span} at row {row}, position {position}: not (-1, -1) nor a span "
                            f"of text {int(index[row])}, which has {int(length[row, 0])} code points")
    return texts
