"""What the SDK hands back: entities found in a text and what the served model says about itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Entity:
    """One entity of a text. ``start``/``end`` count Unicode code points (Python ``str`` indices) in the text as
    sent, end exclusive, so ``text[start:end] == span``."""

    type: str
    start: int
    end: int
    span: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "start": self.start, "end": self.end, "span": self.span, "score": self.score}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Entity":
        return cls(str(data["type"]), int(data["start"]), int(data["end"]), str(data["span"]), float(data["score"]))


@dataclass(frozen=True)
class ModelInfo:
    """The served ensemble, as the server reports it: its configuration (``GET /v2/models/<model>/config``) and the
    versions it serves (``GET /v2/models/<model>``). ``model_hash`` (``sha256:…``) identifies everything that shapes
    its answers: the same hash, the same answers."""

    name: str
    version: str
    model_hash: str
    precision: str
    labels: tuple[str, ...]
    entity_types: tuple[str, ...]
    scheme: str
    crf: bool
    max_text_chars: int
    window_tokens: int
    max_texts_per_request: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_hash": self.model_hash,
            "precision": self.precision,
            "labels": list(self.labels),
            "entity_types": list(self.entity_types),
            "scheme": self.scheme,
            "crf": self.crf,
            "max_text_chars": self.max_text_chars,
            "window_tokens": self.window_tokens,
            "max_texts_per_request": self.max_texts_per_request,
        }
