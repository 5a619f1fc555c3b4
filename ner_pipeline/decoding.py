"""Encoder scores → entities with code-point offsets into the texts as sent.

Per window, the scored positions (first sub-token of each word) are packed and tagged: CRF Viterbi when the model
has CRF parameters, argmax otherwise. Overlapping windows of one text are then merged word by word: the hand-over
from one window to the next happens at a word where neither window continues an entity (the one nearest the middle
of the overlap, where both windows see the most context), so no entity is cut in two, lost, or reported twice. Only
if no such word exists does the hand-over fall back to the middle of the overlap.

Entity ``score``: the mean, over the entity's words, of the probability of the tag the decoder chose for that word
(the CRF marginal from forward-backward when there is a CRF, the softmax of the emissions otherwise), rounded to
4 decimals. It reads as "how sure the model is of this span, word by word".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .crf import CrfParameters, marginals, softmax, viterbi
from .tagging import Tag, chunk, detect_scheme, parse_label
from .validation import decoder_texts


@dataclass
class _Word:
    start: int
    end: int
    tag: int
    prob: float


class Decoder:
    def __init__(self, labels: list[str], crf: CrfParameters | None = None, scheme: str | None = None):
        self.labels = list(labels)
        self.tags: list[Tag] = [parse_label(label) for label in self.labels]
        self.scheme = scheme or detect_scheme(self.labels)
        self.crf = crf
        self._outside = np.array([tag.prefix == "O" for tag in self.tags])

    @classmethod
    def from_folder(cls, folder: str) -> "Decoder":
        """The decoder of an exported model folder: ``labels.json``, and ``crf.npz`` when the checkpoint has a CRF."""
        with open(os.path.join(folder, "labels.json"), encoding="utf-8") as f:
            labels = json.load(f)
        crf_path = os.path.join(folder, "crf.npz")
        return cls(labels, CrfParameters.from_npz(crf_path) if os.path.exists(crf_path) else None)

    def tag_window(self, emissions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tag ids and the probability of each chosen tag, for one window of emissions [n, C]. A CRF window tagged
        all O gets NaN probabilities instead of a forward-backward pass: no entity can read them (most sentences
        have none)."""
        if self.crf is None:
            probs = softmax(emissions)
            path = probs.argmax(axis=-1)
        else:
            path = viterbi(emissions, self.crf)
            if self._outside[path].all():
                return path, np.full(len(path), np.nan)
            probs = marginals(emissions, self.crf)
        return path, probs[np.arange(len(path)), path]

    def _window_words(self, logits: np.ndarray, word_spans: np.ndarray) -> list[_Word]:
        """The scored words of one window (logits [L, C], word_spans [L, 2]), tagged."""
        keep = word_spans[:, 0] >= 0
        path, probs = self.tag_window(logits[keep])
        return [_Word(s, e, t, p) for (s, e), t, p in zip(word_spans[keep].tolist(), path.tolist(), probs.tolist())]

    def _continues(self, word: _Word) -> bool:
        return self.tags[word.tag].continues

    def _merge(self, merged: list[_Word], window: list[_Word]) -> list[_Word]:
        position_in_merged = {word.start: i for i, word in enumerate(merged)}
        shared = [j for j, word in enumerate(window) if word.start in position_in_merged]
        if not shared:
            return merged + window
        middle = len(shared) // 2
        clean = [
            k
            for k, j in enumerate(shared)
            if not self._continues(window[j]) and not self._continues(merged[position_in_merged[window[j].start]])
        ]
        k = min(clean, key=lambda k: abs(k - middle)) if clean else middle
        cut = window[shared[k]].start
        return [w for w in merged if w.start < cut] + [w for w in window if w.start >= cut]

    def _entities(self, text: str, windows: list[list[_Word]]) -> list[dict]:
        words: list[_Word] = []
        for window in windows:
            words = self._merge(words, window)
        entities = []
        for entity_type, first, last in chunk([self.tags[w.tag] for w in words], self.scheme):
            start, end = words[first].start, words[last].end
            score = sum(w.prob for w in words[first : last + 1]) / (last + 1 - first)
            entities.append(
                {"type": entity_type, "start": start, "end": end, "span": text[start:end], "score": round(score, 4)}
            )
        return entities

    def decode_text(self, text: str, windows: list[tuple[np.ndarray, np.ndarray]]) -> list[dict]:
        """Entities of one text from its windows' (logits [L, C], word_spans [L, 2]), in window order."""
        return self._entities(text, [self._window_words(logits, word_spans) for logits, word_spans in windows])

    def decode_batch(
        self, logits: np.ndarray, word_spans: np.ndarray, text_index: np.ndarray, texts: list[str]
    ) -> list[list[dict]]:
        """Entities per text, for encoder rows laid out by :func:`ner_pipeline.windows.encode_texts`."""
        per_text: list[list[list[_Word]]] = [[] for _ in texts]
        for row, text in enumerate(np.asarray(text_index).reshape(-1).tolist()):
            per_text[text].append(self._window_words(logits[row], word_spans[row]))
        return [self._entities(text, windows) for text, windows in zip(texts, per_text)]

    def decode_request(
        self, logits: np.ndarray, word_spans: np.ndarray, text_index: np.ndarray, source_text: np.ndarray
    ) -> np.ndarray:
        """The decoder model's answer to one request: ENTITIES [n_texts, 1], each the UTF-8 JSON array of one text's
        entities. The request's rows are encoder windows; ``text_index`` [rows, 1] says which text each belongs to (0
        to n_texts - 1) and ``source_text`` [rows, 1] holds the text's UTF-8 bytes on its first row (empty on the
        others), as the tokenizer model lays them out. Tensors that do not fit together raise the
        :class:`InputRejected` that names the problem (:func:`ner_pipeline.validation.decoder_texts`)."""
        texts = decoder_texts(logits, word_spans, text_index, source_text, len(self.labels))
        return entities_tensor(self.decode_batch(logits, word_spans, text_index, texts))


def entities_tensor(entities: list[list[dict]]) -> np.ndarray:
    """ENTITIES [n_texts, 1]: each text's entities as a UTF-8 JSON array."""
    return np.array([[entities_to_json(e).encode("utf-8")] for e in entities], dtype=np.object_).reshape(-1, 1)


def entities_to_json(entities: list[dict]) -> str:
    return json.dumps(entities, ensure_ascii=False, separators=(",", ":"))
