"""The served pipeline run in process from a model repository's own files: the same tokenizer.json, the same
ONNX file and the same decoder code (``ner_pipeline``), without Triton. What the server must match exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ner_pipeline import CrfParameters, Decoder, WindowConfig, encode_texts, load_tokenizer

ENCODERS = {"fp32": "encoder_fp32", "int8": "encoder_int8"}


def _parameters(config_pbtxt: Path) -> dict[str, str]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_pbtxt.read_text(), model_config_pb2.ModelConfig())
    return {key: value.string_value for key, value in config.parameters.items()}


class InProcessPipeline:
    def __init__(self, repository: Path, precision: str = "fp32", threads: int = 2):
        repository = Path(repository)
        self.tokenizer = load_tokenizer(str(repository / "tokenizer" / "1" / "tokenizer.json"))
        self.window = WindowConfig.from_parameters(_parameters(repository / "tokenizer" / "config.pbtxt"))
        decoder_dir = repository / "decoder" / "1"
        crf_path = decoder_dir / "crf.npz"
        self.decoder = Decoder(json.loads((decoder_dir / "labels.json").read_text(encoding="utf-8")),
                               CrfParameters.from_npz(str(crf_path)) if crf_path.exists() else None)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(repository / ENCODERS[precision] / "1" / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, texts: list[str]) -> list[list[dict]]:
        """Entities per text; each request of the server is one text here, with its rows run as the server does."""
        results = []
        for text in texts:
            batch = encode_texts(self.tokenizer, [text], self.window)
            logits = self.session.run(["logits"], {"input_ids": batch.input_ids,
                                                   "attention_mask": batch.attention_mask})[0]
            results.extend(self.decoder.decode_batch(logits, batch.word_spans, batch.text_index, [text]))
        return results


def fp32_entities(repository: Path, texts: list[str]) -> list[list[dict]]:
    """Entities per text from the repository's FP32 pipeline in process, one text at a time, with a progress bar."""
    from tqdm import tqdm

    pipeline = InProcessPipeline(repository, "fp32")
    return [pipeline([t])[0] for t in tqdm(texts, desc="in-process FP32", unit="text", file=sys.stderr)]
