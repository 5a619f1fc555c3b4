"""Public checkpoint layouts, end to end: a small synthetic checkpoint per layout, with the file names, key names,
shapes and config fields of the real one (random weights, 2 layers, hidden 32), is exported with the project's
exporter, served by a real tritonserver, and its `ner_fp32` answers are compared with a reference decode written here
from the layout's own rules, from the raw weights (a small BERT forward in torch; not through export.checkpoint).

Sources of the layout details (paths in github.com/modelscope/modelscope unless marked AdaSeq, which is
github.com/modelscope/AdaSeq):

- Legacy RaNER keys ``encoder.*`` (the Hugging Face BertModel, hence the doubled ``encoder.encoder.layer``),
  ``linear.*``, ``crf.*``; num_labels from config.json: modelscope/models/nlp/nncrf_for_named_entity_recognition.py
  (later modelscope/models/nlp/task_models/nncrf_for_named_entity_recognition.py), class TransformerCRF.
- Current keys ``head.linear.*``/``head.crf.*``: modelscope/models/nlp/heads/crf_head.py (TransformersCRFHead) and
  modelscope/models/nlp/task_models/token_classification.py (ModelForTokenClassificationWithCRF, prefix "encoder").
- Legacy keys get ``head.`` added, LayerNorm ``gamma``/``beta`` become ``weight``/``bias``:
  modelscope/models/nlp/task_models/task_model.py and modelscope/utils/checkpoint.py.
- StructBERT's config.json (model_type "structbert", adv_grad_factor/sigma/adv_bound) over a BERT backbone:
  modelscope/models/nlp/structbert/backbone.py and configuration.py.
- Label lookup order (label_mapping.json, configuration.json model.label2id/id2label, preprocessor, config.json):
  modelscope/utils/hub.py::parse_label_mapping.
- CRF semantics (transitions[i, j] = tag i -> tag j, start/end vectors, no extra tags) and Viterbi:
  modelscope/models/nlp/heads/crf_head.py (class CRF); AdaSeq adaseq/modules/decoders/crf.py.
- First sub-token scoring with fast-tokenizer word_ids, word offsets from first to last sub-token; and the
  is_split_into_words path (each character encoded alone, empty -> [UNK]); tokenizer options from
  tokenizer_config.json: modelscope/preprocessors/nlp/token_classification_preprocessor.py and
  modelscope/preprocessors/nlp/transformers_tokenizer.py.
- AdaSeq keys ``embedder.transformer_model.*``, ``linear.*``, ``crf.*``, labels ``model.id_to_label``:
  AdaSeq adaseq/models/sequence_labeling_model.py; first sub-token of each "word", where AdaSeq's words are the
  word pieces of the text re-encoded one by one: AdaSeq adaseq/data/preprocessors/nlp_preprocessor.py
  (encode_text, encode_tokens_wordpiece) and adaseq/modules/embedders/transformer_embedder.py (sub_token_mode first).
  The served pipeline uses ModelScope's word rule instead; both agree on CJK text, which is what the AdaSeq texts hold.
- Chunking: the project decodes strictly (seqeval strict; docs/checkpoints.md). ModelScope's pipeline
  (modelscope/pipelines/nlp/token_classification_pipeline.py) lets O leave a chunk open; that quirk is not followed.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from export.pipeline import export_checkpoint
from export.checkpoint import CheckpointError, load_checkpoint
from ner_model.data import vocab_file
from export.repository import RepositoryConfig
from serving.server import ServerConfig, TritonServer, free_port
from triton_calls import client, text_tensor

pytestmark = pytest.mark.server

HIDDEN, LAYERS, HEADS, INTERMEDIATE, MAX_POSITIONS = 32, 2, 2, 64, 512
VOCAB_ROWS = 21128
CLS, SEP, UNK = 101, 102, 100

MSRA_BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
MSRA_BIOES = ["O"] + [f"{p}-{t}" for t in ("LOC", "ORG", "PER") for p in "BIES"]
ONTONOTES = ["CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL", "ORG",
             "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"]
ONTONOTES_BIOES = ["O"] + [f"{p}-{t}" for t in ONTONOTES for p in "BIES"]
BMES_LABELS = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG", "GPE") for p in "BMES"]

# No control characters nor lone combining marks: the BERT normalizer drops them, where ModelScope's per-character
# path (is_split_into_words) gives each an [UNK] position (see export/tokenizer_files.py).
TEXTS = [
    "张三在北京的清华大学读书。",
    "联合国秘书长访问上海，Microsoft 与微软公司的代表同行。",
    "2024年3月，李四从乌鲁木齐出发\t沿长江而下。",
    "Ｆｕｌｌ　ｗｉｄｔｈ文字和😀表情都要对齐。",
    "欧阳娜娜说：“我们明天去南京路看看。”",
    "国正先生在我心中就是这样的一位学长。",
    "THE QUICK brown fox 跳过了懒狗，花了 123.45 元",
    "  前后有空格  ",
    "",
]
# AdaSeq re-encodes each word piece on its own (a "##x" piece becomes "#", "#", "x"): CJK text only, where its words
# and ModelScope's coincide.
CJK_TEXTS = [
    "张三在北京的清华大学读书。",
    "欧阳娜娜说：“我们明天去南京路看看。”",
    "国正先生在我心中就是这样的一位学长。",
    "联合国秘书长访问上海，微软公司的代表同行。",
    "李四从乌鲁木齐出发沿长江而下，在武汉停留三天。",
    "",
]


# ------------------------------------------------------------------------------------------- synthetic weights


def random_bert(prefix: str, gen: torch.Generator, layer_norm=("weight", "bias"), pooler=True,
                position_ids=False) -> dict[str, torch.Tensor]:
    """BERT encoder weights under ``prefix`` with BertModel's key names."""
    def normal(*shape, std=0.5):
        return torch.randn(*shape, generator=gen) * std

    w = {
        "embeddings.word_embeddings.weight": normal(VOCAB_ROWS, HIDDEN, std=1.0),
        "embeddings.position_embeddings.weight": normal(MAX_POSITIONS, HIDDEN, std=0.3),
        "embeddings.token_type_embeddings.weight": normal(2, HIDDEN, std=0.3),
    }

    def add_layer_norm(name):
        w[f"{name}.{layer_norm[0]}"] = 1.0 + normal(HIDDEN, std=0.1)
        w[f"{name}.{layer_norm[1]}"] = normal(HIDDEN, std=0.1)

    def add_linear(name, n_out, n_in):
        w[f"{name}.weight"] = normal(n_out, n_in, std=1.0 / math.sqrt(n_in))
        w[f"{name}.bias"] = normal(n_out, std=0.1)

    add_layer_norm("embeddings.LayerNorm")
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            add_linear(f"{layer}.attention.self.{part}", HIDDEN, HIDDEN)
        add_linear(f"{layer}.attention.output.dense", HIDDEN, HIDDEN)
        add_layer_norm(f"{layer}.attention.output.LayerNorm")
        add_linear(f"{layer}.intermediate.dense", INTERMEDIATE, HIDDEN)
        add_linear(f"{layer}.output.dense", HIDDEN, INTERMEDIATE)
        add_layer_norm(f"{layer}.output.LayerNorm")
    if pooler:
        add_linear("pooler.dense", HIDDEN, HIDDEN)
    if position_ids:
        w["embeddings.position_ids"] = torch.arange(MAX_POSITIONS).unsqueeze(0)
    return {prefix + k: v for k, v in w.items()}


def emission_head(prefix: str, labels: list[str], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A linear head whose labels all win somewhere: logits spread ~2.5, O a little ahead."""
    weight = torch.randn(len(labels), HIDDEN, generator=gen) * (2.5 / math.sqrt(HIDDEN))
    bias = torch.zeros(len(labels))
    bias[labels.index("O")] = 1.5
    return {f"{prefix}weight": weight, f"{prefix}bias": bias}


def random_crf(prefix: str, labels: list[str], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Strong, asymmetric transitions, so that a transposed or ignored CRF changes the paths; moves that continue a
    span (B/I/M-X -> I/M/E-X) get a bonus, so that multi-word entities appear too."""
    n = len(labels)
    transitions = torch.randn(n, n, generator=gen) * 1.5
    for i, previous in enumerate(labels):
        for j, following in enumerate(labels):
            if previous[0] in "BIM" and following[0] in "IME" and previous[2:] == following[2:]:
                transitions[i, j] += 3.0
    return {f"{prefix}transitions": transitions, f"{prefix}start_transitions": torch.randn(n, generator=gen),
            f"{prefix}end_transitions": torch.randn(n, generator=gen)}


def bert_config(**extra) -> dict:
    return {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "directionality": "bidi",
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN, "initializer_range": 0.02,
            "intermediate_size": INTERMEDIATE, "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POSITIONS,
            "model_type": "bert", "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 0,
            "pooler_fc_size": HIDDEN, "type_vocab_size": 2, "vocab_size": VOCAB_ROWS, **extra}


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2))


# ------------------------------------------------------------------------------------------- reference decode


def reference_emissions(w: dict, prefix: str, ids: list[int], layer_norm=("weight", "bias")) -> torch.Tensor:
    """BERT (absolute positions, token types all 0, exact GELU, eps 1e-12) on one unpadded row, then nothing else."""
    def p(name):
        return w[prefix + name].double()

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (HIDDEN,), p(f"{name}.{layer_norm[0]}"), p(f"{name}.{layer_norm[1]}"),
                                              eps=1e-12)

    def dense(x, name):
        return x @ p(f"{name}.weight").T + p(f"{name}.bias")

    ids_t = torch.tensor(ids)
    n, d = len(ids), HIDDEN // HEADS
    x = p("embeddings.word_embeddings.weight")[ids_t] + p("embeddings.position_embeddings.weight")[:n] \
        + p("embeddings.token_type_embeddings.weight")[0]
    x = ln(x, "embeddings.LayerNorm")
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}"
        q, k, v = (dense(x, f"{layer}.attention.self.{s}").view(n, HEADS, d).transpose(0, 1)
                   for s in ("query", "key", "value"))
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1) @ v
        x = ln(x + dense(attention.transpose(0, 1).reshape(n, HIDDEN), f"{layer}.attention.output.dense"),
               f"{layer}.attention.output.LayerNorm")
        hidden = torch.nn.functional.gelu(dense(x, f"{layer}.intermediate.dense"))
        x = ln(x + dense(hidden, f"{layer}.output.dense"), f"{layer}.output.LayerNorm")
    return x


def viterbi_path(emissions: np.ndarray, transitions, start, end) -> list[int]:
    """Best path; transitions[i, j] scores previous tag i -> next tag j."""
    n_tags = emissions.shape[1]
    best = [start + emissions[0]]
    back = []
    for t in range(1, len(emissions)):
        scores = best[-1][:, None] + transitions  # [previous, next]
        back.append(scores.argmax(axis=0))
        best.append(scores.max(axis=0) + emissions[t])
    last = int(np.argmax(best[-1] + end))
    path = [last]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    assert all(0 <= tag < n_tags for tag in path)
    return path[::-1]


def strict_chunks(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """(type, first word, last word) under strict chunking: a span opens at B (or is one S) and, in BIOES/BMES,
    exists only once closed by E; in BIO it ends before the first tag that does not continue it."""
    def split(tag):
        return ("O", "") if tag == "O" else (tag[0].replace("M", "I"), tag[2:])

    spans, current = [], None  # current: [type, first word]
    for i, tag in enumerate(tags + ["O"]):
        prefix, kind = split(tag) if i < len(tags) else ("END", "")
        continues = current is not None and prefix in ("I", "E") and kind == current[0]
        if current is not None and not continues and scheme == "BIO":
            spans.append((current[0], current[1], i - 1))
        if not continues:
            current = None
        if prefix == "B":
            current = [kind, i]
        elif prefix == "S":
            spans.append((kind, i, i))
        elif continues and prefix == "E":
            spans.append((current[0], current[1], i))
            current = None
    return spans


@dataclass
class Layout:
    """One synthetic checkpoint and the rules to decode it."""

    name: str
    directory: Path
    layout: str  # what export.checkpoint must report
    labels: list[str]
    scheme: str
    weights: dict[str, torch.Tensor]
    encoder_prefix: str
    head_prefix: str
    crf_prefix: str | None
    words: str  # "word_ids" (ModelScope fast path / Hugging Face), "characters" (is_split_into_words), "adaseq"
    lowercase: bool
    texts: list[str] = field(default_factory=lambda: list(TEXTS))
    layer_norm: tuple[str, str] = ("weight", "bias")

    def wordpiece(self):
        from tokenizers import BertWordPieceTokenizer

        return BertWordPieceTokenizer(str(vocab_file()), lowercase=self.lowercase, clean_text=True,
                                      handle_chinese_chars=True, strip_accents=None)

    def words_of(self, text: str) -> list[tuple[list[int], int, int]]:
        """(word piece ids, start, end) per word, by the layout's own rule."""
        tok = self.wordpiece()
        if self.words == "characters":  # every character encoded alone; nothing -> [UNK]
            return [(tok.encode(c, add_special_tokens=False).ids or [UNK], i, i + 1) for i, c in enumerate(text)]
        encoding = tok.encode(text, add_special_tokens=False)
        if self.words == "adaseq":  # every word piece of the text re-encoded on its own
            return [(tok.encode(piece, add_special_tokens=False).ids or [UNK], s, e)
                    for piece, (s, e) in zip(encoding.tokens, encoding.offsets)]
        words: dict[int, list] = {}
        for token_id, word, (s, e) in zip(encoding.ids, encoding.word_ids, encoding.offsets):
            if word in words:
                words[word][0].append(token_id)
                words[word][2] = e
            else:
                words[word] = [[token_id], s, e]
        return [tuple(words[k]) for k in sorted(words)]

    def decode(self, text: str) -> list[tuple[str, int, int, str]]:
        words = self.words_of(text)
        if not words:
            return []
        ids, scored = [CLS], []
        for pieces, _, _ in words:
            scored.append(len(ids))
            ids.extend(pieces)
        ids.append(SEP)
        hidden = reference_emissions(self.weights, self.encoder_prefix, ids, self.layer_norm)
        head = (self.weights[f"{self.head_prefix}weight"].double(), self.weights[f"{self.head_prefix}bias"].double())
        emissions = (hidden[scored] @ head[0].T + head[1]).numpy()
        if self.crf_prefix is None:
            path = emissions.argmax(axis=1).tolist()
        else:
            path = viterbi_path(emissions, *(self.weights[f"{self.crf_prefix}{k}"].double().numpy()
                                             for k in ("transitions", "start_transitions", "end_transitions")))
        spans = strict_chunks([self.labels[t] for t in path], self.scheme)
        return [(kind, words[a][1], words[b][2], text[words[a][1]:words[b][2]]) for kind, a, b in spans]


# ------------------------------------------------------------------------------------------- the layouts


def raner_legacy(directory: Path) -> Layout:
    """damo/nlp_raner_named-entity-recognition_chinese-base-news as the original TransformerCRF saved it:
    pytorch_model.bin with encoder.* (old gamma/beta LayerNorm names, the position_ids buffer, the pooler),
    linear.*, crf.*; labels in label_mapping.json; no tokenizer_config.json (slow BertTokenizer defaults)."""
    gen = torch.Generator().manual_seed(1)
    labels = MSRA_BIO
    weights = {**random_bert("encoder.", gen, layer_norm=("gamma", "beta"), position_ids=True),
               **emission_head("linear.", labels, gen), **random_crf("crf.", labels, gen)}
    torch.save(weights, directory / "pytorch_model.bin")
    # config.json numbers the labels differently on purpose: label_mapping.json comes first in ModelScope's lookup.
    shuffled = labels[1:] + labels[:1]
    write_json(directory / "config.json", bert_config(id2label={str(i): l for i, l in enumerate(shuffled)},
                                                      label2id={l: i for i, l in enumerate(shuffled)}))
    write_json(directory / "configuration.json", {
        "framework": "pytorch", "task": "named-entity-recognition",
        "model": {"type": "transformer-crf"}, "pipeline": {"type": "named-entity-recognition"},
        "preprocessor": {"type": "ner-tokenizer"}})
    write_json(directory / "label_mapping.json", {l: i for i, l in enumerate(labels)})
    shutil.copyfile(vocab_file(), directory / "vocab.txt")
    return Layout("raner-legacy", directory, "modelscope-transformer-crf (legacy keys)", labels, "BIO", weights,
                  "encoder.", "linear.", "crf.", "word_ids", lowercase=True, layer_norm=("gamma", "beta"))


def raner_structbert_current(directory: Path) -> Layout:
    """A RaNER re-saved by current ModelScope: encoder.* + head.linear.* + head.crf.*, a StructBERT config.json,
    labels in configuration.json model.id2label, BIOES; tokenizer_config.json with do_lower_case false and
    is_split_into_words true (one scored position per character)."""
    gen = torch.Generator().manual_seed(2)
    labels = MSRA_BIOES
    weights = {**random_bert("encoder.", gen, position_ids=True), **emission_head("head.linear.", labels, gen),
               **random_crf("head.crf.", labels, gen)}
    torch.save(weights, directory / "pytorch_model.bin")
    write_json(directory / "config.json", bert_config(model_type="structbert", architectures=["SbertModel"],
                                                      adv_grad_factor=5e-3, sigma=5e-3, adv_bound=0.2))
    write_json(directory / "configuration.json", {
        "framework": "pytorch", "task": "named-entity-recognition",
        "model": {"type": "transformer-crf", "id2label": {str(i): l for i, l in enumerate(labels)}},
        "pipeline": {"type": "named-entity-recognition"},
        "preprocessor": {"type": "sequence-labeling-tokenizer", "sequence_length": 512}})
    write_json(directory / "tokenizer_config.json", {"do_lower_case": False, "use_fast": True,
                                                     "is_split_into_words": True, "model_max_length": 512})
    shutil.copyfile(vocab_file(), directory / "vocab.txt")
    return Layout("raner-structbert-current", directory, "modelscope-transformer-crf", labels, "BIOES", weights,
                  "encoder.", "head.linear.", "head.crf.", "characters", lowercase=False)


def adaseq(directory: Path) -> Layout:
    """An AdaSeq-trained model: embedder.transformer_model.* + linear.* + crf.*, configuration.json with
    model.type sequence-labeling-model and model.id_to_label; BIOES (AdaSeq's default tag scheme)."""
    gen = torch.Generator().manual_seed(7)
    labels = MSRA_BIOES
    weights = {**random_bert("embedder.transformer_model.", gen), **emission_head("linear.", labels, gen),
               **random_crf("crf.", labels, gen)}
    torch.save(weights, directory / "pytorch_model.bin")
    write_json(directory / "config.json", bert_config())
    write_json(directory / "configuration.json", {
        "framework": "pytorch", "task": "named-entity-recognition",
        "model": {"type": "sequence-labeling-model", "id_to_label": {str(i): l for i, l in enumerate(labels)},
                  "embedder": {"model_name_or_path": "damo/nlp_raner_named-entity-recognition_chinese-base-news"},
                  "dropout": 0.1, "use_crf": True},
        "pipeline": {"type": "sequence-labeling-pipeline"},
        "preprocessor": {"type": "sequence-labeling-preprocessor", "max_length": 100, "tag_scheme": "BIOES"}})
    write_json(directory / "tokenizer_config.json", {"do_lower_case": True, "tokenizer_class": "BertTokenizer"})
    shutil.copyfile(vocab_file(), directory / "vocab.txt")
    return Layout("adaseq", directory, "adaseq-sequence-labeling", labels, "BIOES", weights,
                  "embedder.transformer_model.", "linear.", "crf.", "adaseq", lowercase=True, texts=list(CJK_TEXTS))


def hf_ontonotes(directory: Path) -> Layout:
    """A Hugging Face BertForTokenClassification (as ckiplab/bert-base-chinese-ner is): 18 OntoNotes types in
    BIOES (73 labels), model.safetensors, no CRF; tokenizer_config.json without do_lower_case (BertTokenizer's
    default, true, applies)."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(4)
    labels = ONTONOTES_BIOES
    weights = {**random_bert("bert.", gen, pooler=False), **emission_head("classifier.", labels, gen)}
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    write_json(directory / "config.json", bert_config(architectures=["BertForTokenClassification"],
                                                      id2label={str(i): l for i, l in enumerate(labels)},
                                                      label2id={l: i for i, l in enumerate(labels)}))
    write_json(directory / "tokenizer_config.json", {"tokenizer_class": "BertTokenizerFast", "model_max_length": 512})
    write_json(directory / "special_tokens_map.json", {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                                       "cls_token": "[CLS]", "mask_token": "[MASK]"})
    shutil.copyfile(vocab_file(), directory / "vocab.txt")
    return Layout("hf-ontonotes-bioes", directory, "huggingface", labels, "BIOES", weights, "bert.", "classifier.",
                  None, "word_ids", lowercase=True)


def hf_bmes_crf(directory: Path) -> Layout:
    """A Hugging Face BERT-CRF token classifier (custom class): pytorch_model.bin with bert.*, classifier.* and
    crf.*, BMES labels, do_lower_case false."""
    gen = torch.Generator().manual_seed(5)
    labels = BMES_LABELS
    weights = {**random_bert("bert.", gen, position_ids=True), **emission_head("classifier.", labels, gen),
               **random_crf("crf.", labels, gen)}
    torch.save(weights, directory / "pytorch_model.bin")
    write_json(directory / "config.json", bert_config(architectures=["BertCrfForTokenClassification"],
                                                      id2label={str(i): l for i, l in enumerate(labels)},
                                                      label2id={l: i for i, l in enumerate(labels)}))
    write_json(directory / "tokenizer_config.json", {"do_lower_case": False, "tokenizer_class": "BertTokenizer"})
    shutil.copyfile(vocab_file(), directory / "vocab.txt")
    return Layout("hf-bmes-crf", directory, "huggingface", labels, "BMES", weights, "bert.", "classifier.", "crf.",
                  "word_ids", lowercase=False)


LAYOUTS = {f.__name__: f for f in (raner_legacy, raner_structbert_current, adaseq, hf_ontonotes, hf_bmes_crf)}


@dataclass
class Served:
    layout: Layout
    checkpoint: object
    report: dict
    fp32: list[list[dict]]
    int8: list[list[dict]]


def _infer(url: str, model: str, texts: list[str]) -> list[list[dict]]:
    result = client("http", url).infer(model, [text_tensor("http", texts)])
    return [json.loads(row[0]) for row in result.as_numpy("ENTITIES")]


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def served(request, tmp_path_factory):
    """Writes, exports and serves one layout; the server answers both ensembles, then stops."""
    root = tmp_path_factory.mktemp(request.param)
    (root / "checkpoint").mkdir()
    layout = LAYOUTS[request.param](root / "checkpoint")
    repository = root / "model_repository"
    report = export_checkpoint(layout.directory, repository, RepositoryConfig())
    server = TritonServer(ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                                       metrics_port=free_port(), log_file=root / "tritonserver.log"))
    server.start(timeout=120)
    try:
        fp32 = _infer(server.http_url, "ner_fp32", layout.texts)
        int8 = _infer(server.http_url, "ner", layout.texts)
    finally:
        server.stop()
    return Served(layout, load_checkpoint(layout.directory), report, fp32, int8)


def test_loader_reads_what_the_layout_says(served):
    layout, checkpoint = served.layout, served.checkpoint
    assert checkpoint.layout == layout.layout
    assert checkpoint.labels == layout.labels
    assert checkpoint.scheme == layout.scheme
    assert (checkpoint.crf is not None) == (layout.crf_prefix is not None)
    if layout.crf_prefix is not None:  # not transposed, not re-ordered
        want = layout.weights[f"{layout.crf_prefix}transitions"].numpy()
        np.testing.assert_allclose(checkpoint.crf.transitions, want)
    assert checkpoint.tokenizer_options["do_lower_case"] is layout.lowercase
    assert checkpoint.tokenizer_options["split_into_words"] is (layout.words == "characters")
    assert served.report["labels"] == layout.labels and served.report["scheme"] == layout.scheme
    assert served.report["parity_max_abs_logit_diff"] <= 1e-4


def test_fp32_ensemble_matches_the_layouts_own_decode(served):
    layout = served.layout
    produced = 0
    types = set()
    for text, entities in zip(layout.texts, served.fp32):
        got = [(e["type"], e["start"], e["end"], e["span"]) for e in entities]
        assert got == layout.decode(text), text
        assert all(e["span"] == text[e["start"]:e["end"]] and 0.0 <= e["score"] <= 1.0 for e in entities)
        produced += len(entities)
        types |= {e["type"] for e in entities}
    # Random weights tag arbitrary things; the comparison only proves something if things are tagged.
    assert produced >= 8 and len(types) >= 2, (produced, types)


def test_int8_ensemble_answers_well_formed_entities(served):
    known = {label.split("-", 1)[1] for label in served.layout.labels if label != "O"}
    for text, entities in zip(served.layout.texts, served.int8):
        for e in entities:
            assert e["type"] in known and e["span"] == text[e["start"]:e["end"]] and e["start"] < e["end"]


# ------------------------------------------------------------------------------------------- refusals


def test_unknown_layout_is_refused_with_what_was_found(tmp_path):
    torch.save({"foo.weight": torch.zeros(3, 4), "bar.bias": torch.zeros(3)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    message = str(err.value)
    assert "unsupported checkpoint layout" in message
    assert "pytorch_model.bin holds" in message and "foo.weight" in message and "bar.bias" in message


def test_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(CheckpointError, match=r"no weights .*notes\.txt"):
        load_checkpoint(tmp_path)


@pytest.fixture(scope="module")
def legacy_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("legacy-refusals")
    raner_legacy(directory)
    return directory


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "checkpoint"
    shutil.copytree(source, target)
    return target


def test_label_count_must_match_the_emission_head(legacy_dir, tmp_path):
    directory = _copy(legacy_dir, tmp_path)
    write_json(directory / "label_mapping.json", {l: i for i, l in enumerate(MSRA_BIO[:5])})
    with pytest.raises(CheckpointError, match=r"names 5 labels but the emission head has 7 outputs"):
        load_checkpoint(directory)


def test_labels_fall_back_to_config_json_in_modelscope_order(legacy_dir, tmp_path):
    directory = _copy(legacy_dir, tmp_path)
    (directory / "label_mapping.json").unlink()
    checkpoint = load_checkpoint(directory)
    assert checkpoint.labels == MSRA_BIO[1:] + MSRA_BIO[:1]
    assert checkpoint.labels_source.endswith("config.json label2id")


def test_placeholder_labels_are_refused(legacy_dir, tmp_path):
    directory = _copy(legacy_dir, tmp_path)
    write_json(directory / "label_mapping.json", {f"LABEL_{i}": i for i in range(7)})
    with pytest.raises(CheckpointError, match="placeholder names"):
        load_checkpoint(directory)


@pytest.mark.parametrize("labels, message", [
    (["O", "B-PER", "I-PER", "S-PER", "B-LOC", "I-LOC", "S-LOC"], "S- tags without E- tags"),  # BIOS, as CLUENER
    (["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "[PAD]"], r"label '\[PAD\]' is not O"),
])
def test_label_sets_the_decoder_cannot_chunk_are_refused(legacy_dir, tmp_path, labels, message):
    directory = _copy(legacy_dir, tmp_path)
    write_json(directory / "label_mapping.json", {l: i for i, l in enumerate(labels)})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(directory)


def test_transformer_crf_without_crf_is_refused(legacy_dir, tmp_path):
    directory = _copy(legacy_dir, tmp_path)
    weights = torch.load(directory / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in weights.items() if not k.startswith("crf.")}, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"must hold crf\.\* CRF parameters"):
        load_checkpoint(directory)


def test_adaseq_sub_token_averaging_is_refused(tmp_path):
    directory = tmp_path / "adaseq"
    directory.mkdir()
    adaseq(directory)
    configuration = json.loads((directory / "configuration.json").read_text())
    configuration["model"]["embedder"]["sub_token_mode"] = "avg"
    write_json(directory / "configuration.json", configuration)
    with pytest.raises(CheckpointError, match="sub_token_mode is 'avg'"):
        load_checkpoint(directory)


# ------------------------------------------------------------------------------------------- loader-only layouts


def _emissions_agree(checkpoint, layout: Layout, text: str) -> None:
    words = layout.words_of(text)
    ids = [CLS] + [i for pieces, _, _ in words for i in pieces] + [SEP]
    hidden = reference_emissions(layout.weights, layout.encoder_prefix, ids, layout.layer_norm)
    want = hidden @ layout.weights[f"{layout.head_prefix}weight"].double().T \
        + layout.weights[f"{layout.head_prefix}bias"].double()
    with torch.no_grad():
        got = checkpoint.model(torch.tensor([ids]), torch.ones((1, len(ids)), dtype=torch.long))[0]
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)


def test_modelscope_token_classifier_without_crf(tmp_path):
    """Current ModelScope ModelForTokenClassification: encoder.* + head.classifier.*, no CRF
    (modelscope/models/nlp/heads/token_classification_head.py; task_models/token_classification.py)."""
    gen = torch.Generator().manual_seed(6)
    weights = {**random_bert("encoder.", gen), **emission_head("head.classifier.", MSRA_BIO, gen)}
    torch.save(weights, tmp_path / "pytorch_model.bin")
    write_json(tmp_path / "config.json", bert_config())
    write_json(tmp_path / "configuration.json", {"task": "named-entity-recognition",
                                                 "model": {"type": "token-classification-for-ner"},
                                                 "preprocessor": {"type": "token-cls-tokenizer",
                                                                  "label2id": {l: i for i, l in enumerate(MSRA_BIO)}}})
    shutil.copyfile(vocab_file(), tmp_path / "vocab.txt")
    checkpoint = load_checkpoint(tmp_path)
    assert (checkpoint.layout, checkpoint.labels, checkpoint.crf) == ("modelscope-token-classification", MSRA_BIO, None)
    assert checkpoint.labels_source.endswith("configuration.json preprocessor.label2id")
    layout = Layout("ms-token-cls", tmp_path, checkpoint.layout, MSRA_BIO, "BIO", weights, "encoder.",
                    "head.classifier.", None, "word_ids", lowercase=True)
    _emissions_agree(checkpoint, layout, TEXTS[1])


def test_structbert_token_classifier_with_hugging_face_keys(tmp_path):
    """A StructBERT token classifier (bert.* + classifier.*, model_type structbert;
    modelscope/models/nlp/structbert/token_classification.py): Hugging Face keys, ModelScope label order."""
    gen = torch.Generator().manual_seed(8)
    weights = {**random_bert("bert.", gen, layer_norm=("gamma", "beta")),
               **emission_head("classifier.", MSRA_BIOES, gen)}
    torch.save(weights, tmp_path / "pytorch_model.bin")
    write_json(tmp_path / "config.json", bert_config(model_type="structbert", adv_grad_factor=5e-3, sigma=5e-3,
                                                     adv_bound=0.2))
    write_json(tmp_path / "configuration.json", {"task": "named-entity-recognition",
                                                 "model": {"type": "structbert"}})
    write_json(tmp_path / "label_mapping.json", {l: i for i, l in enumerate(MSRA_BIOES)})
    shutil.copyfile(vocab_file(), tmp_path / "vocab.txt")
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.layout == "modelscope-token-classification (Hugging Face keys)"
    assert (checkpoint.labels, checkpoint.scheme, checkpoint.model_type) == (MSRA_BIOES, "BIOES", "structbert")
    layout = Layout("sbert-token-cls", tmp_path, checkpoint.layout, MSRA_BIOES, "BIOES", weights, "bert.",
                    "classifier.", None, "word_ids", lowercase=True, layer_norm=("gamma", "beta"))
    _emissions_agree(checkpoint, layout, TEXTS[2])
