"""In-process reference: the checkpoint's PyTorch model and the project's own pre- and post-processing."""

from __future__ import annotations

import numpy as np

from export.checkpoint import Checkpoint
from export.onnx_export import run_torch
from ner_pipeline import Decoder, WindowConfig, encode_texts


class ReferenceTagger:
    SLICE = 64  # texts per pass: a whole test's texts may need more windows than one request may hold

    def __init__(self, checkpoint: Checkpoint, tokenizer, window: WindowConfig = WindowConfig()):
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer  # the tokenizers.Tokenizer written into the model repository
        self.window = window
        self.decoder = Decoder(checkpoint.labels, checkpoint.crf)

    def __call__(self, texts: list[str]) -> list[list[dict]]:
        return [entities for start in range(0, len(texts), self.SLICE)
                for entities in self._tag(texts[start:start + self.SLICE])]

    def _tag(self, texts: list[str]) -> list[list[dict]]:
        batch = encode_texts(self.tokenizer, texts, self.window)
        # Row by row at its own length: the reference must not depend on how the server pads or batches.
        logits = np.zeros(batch.input_ids.shape + (len(self.checkpoint.labels),), dtype=np.float32)
        for row in range(batch.rows):
            n = int(batch.attention_mask[row].sum())
            logits[row, :n] = run_torch(self.checkpoint.model, batch.input_ids[row : row + 1, :n],
                                        batch.attention_mask[row : row + 1, :n])[0]
        return self.decoder.decode_batch(logits, batch.word_spans, batch.text_index, texts)
