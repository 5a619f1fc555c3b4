"""The project's default Chinese NER model: LAC's character BiGRU with an emission head and a CRF.

``forward(input_ids, attention_mask) -> emissions [B, L, C]`` takes bert-base-chinese ids directly (the embedding row
of bert token i was initialised from LAC's embedding of that token). The CRF is not part of ``forward``: the serving
decoder runs Viterbi over the packed scores of each word's first sub-token with ``crf.safetensors``.

Right padding never changes the emissions of real positions: the forward GRU only reads the past, and the backward
GRU runs over each sequence reversed by its own length (a gather), so padding stays after the real tokens in both
directions. This module depends only on torch, numpy, safetensors and the standard library.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from .lexicon import LexiconMatcher

MODEL_TYPE = "lac_bigru_crf"
DEFAULT_CONFIG = {
    "model_type": MODEL_TYPE,
    "architectures": ["LacBiGruCrf"],
    "vocab_size": 21128,
    "embedding_dim": 128,
    "hidden_size": 128,
    "num_gru_layers": 2,
    "num_attention_layers": 0,
    "attention_heads": 4,
    "attention_ffn": 512,
    "dropout": 0.1,
    "pad_token_id": 0,
    "lexicon_buckets": 0,
    "lexicon_max_len": 8,
    "fold_traditional": False,
}
# Keys of features this architecture does not have (docs/experiments.md: what they scored, the commit that has them).
# A checkpoint may carry them switched off, as the shipped one does; their companion sizes (bigram_dim, lac_tags) mean
# nothing then and are ignored.
REMOVED_FEATURES = {"bigram_buckets": 0, "lac_features": 0}
IGNORED_KEYS = ("bigram_dim", "lac_tags")

CRF_PARAMETERS = ("transitions", "start_transitions", "end_transitions")  # the keys of crf.safetensors


class CRF(nn.Module):
    """Linear-chain CRF; ``transitions[i, j]`` scores previous tag i → next tag j."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per sequence [B]; ``mask`` is left-aligned and true at position 0."""
        mask_f = mask.to(emissions.dtype)
        B, T, C = emissions.shape
        lengths = mask.long().sum(1)
        # gold path score
        em = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # [B, T]
        score = self.start_transitions[tags[:, 0]] + (em * mask_f).sum(1)
        if T > 1:
            tr = self.transitions[tags[:, :-1], tags[:, 1:]]  # [B, T-1]
            score = score + (tr * mask_f[:, 1:]).sum(1)
        last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        score = score + self.end_transitions[last]
        # partition function
        alpha = self.start_transitions.unsqueeze(0) + emissions[:, 0]  # [B, C]
        trans = self.transitions.unsqueeze(0)
        for t in range(1, T):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        log_z = torch.logsumexp(alpha + self.end_transitions.unsqueeze(0), dim=1)
        return log_z - score

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi over each row's first ``mask.sum()`` positions."""
        B, T, C = emissions.shape
        lengths = mask.long().sum(1).tolist()
        score = self.start_transitions.unsqueeze(0) + emissions[:, 0]
        history = []
        for t in range(1, T):
            cand = score.unsqueeze(2) + self.transitions.unsqueeze(0)  # [B, C(prev), C(next)]
            best, idx = cand.max(dim=1)
            nxt = best + emissions[:, t]
            m = mask[:, t].unsqueeze(1)
            score = torch.where(m, nxt, score)
            history.append(idx)
        score = score + self.end_transitions.unsqueeze(0)
        paths = []
        for b in range(B):
            n = lengths[b]
            if n == 0:
                paths.append([])
                continue
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(n - 1, 0, -1):
                tag = int(history[t - 1][b, tag])
                path.append(tag)
            path.reverse()
            paths.append(path)
        return paths


class BiGRULayer(nn.Module):
    """A bidirectional GRU layer as two unidirectional GRUs; the backward one runs on length-reversed rows."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.fwd = nn.GRU(input_size, hidden_size, batch_first=True)
        self.bwd = nn.GRU(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, rev_index: torch.Tensor) -> torch.Tensor:
        f, _ = self.fwd(x)
        xr = x.gather(1, rev_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        b, _ = self.bwd(xr)
        b = b.gather(1, rev_index.unsqueeze(-1).expand(-1, -1, b.shape[-1]))
        return torch.cat([f, b], dim=-1)


class SelfAttentionLayer(nn.Module):
    """Post-norm transformer layer with key padding mask (written out so that it exports plainly to ONNX)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))
        self.ln2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(B, L, 3, h, D // h).permute(2, 0, 3, 1, 4)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D // h) + key_bias
        att = self.drop(att.softmax(dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, L, D)
        x = self.ln1(x + self.drop(self.out(y)))
        return self.ln2(x + self.drop(self.ff(x)))


class CrfTagger(nn.Module):
    """An emission network (``forward(input_ids, attention_mask) -> [B, L, C]``) with a CRF over first sub-tokens,
    saved as ``config.json`` + ``model.safetensors`` (no CRF keys) + ``crf.safetensors`` (what the exporter reads)."""

    MODEL_TYPE = ""
    config: dict
    crf: CRF

    def word_emissions(self, input_ids, attention_mask, word_pos) -> torch.Tensor:
        em = self.forward(input_ids, attention_mask)
        return em.gather(1, word_pos.unsqueeze(-1).expand(-1, -1, em.shape[-1]))

    def loss(self, input_ids, attention_mask, word_pos, word_mask, labels) -> torch.Tensor:
        """Mean CRF negative log-likelihood per scored word."""
        em = self.word_emissions(input_ids, attention_mask, word_pos)
        nll = self.crf.nll(em, labels, word_mask)
        return nll.sum() / word_mask.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, input_ids, attention_mask, word_pos, word_mask) -> list[list[int]]:
        em = self.word_emissions(input_ids, attention_mask, word_pos)
        return self.crf.decode(em, word_mask)

    # ------------------------------------------------------------------ persistence
    def encoder_state_dict(self) -> dict:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("crf.")}

    def save_pretrained(self, directory) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = dict(self.config)
        cfg["model_type"] = self.MODEL_TYPE
        cfg["architectures"] = [type(self).__name__]
        (directory / "config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        save_file(self.encoder_state_dict(), str(directory / "model.safetensors"), metadata={"format": "pt"})
        crf = {name: getattr(self.crf, name).detach().float().contiguous() for name in CRF_PARAMETERS}
        save_file(crf, str(directory / "crf.safetensors"), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory):
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg = json.loads((directory / "config.json").read_text())
        model = cls(cfg)
        state = load_file(str(directory / "model.safetensors"))
        crf_path = directory / "crf.safetensors"
        if crf_path.exists():
            state.update({f"crf.{k}": v for k, v in load_file(str(crf_path)).items()})
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k.startswith("crf.") and not crf_path.exists())]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
        model.eval()
        return model


class LacBiGruCrf(CrfTagger):
    MODEL_TYPE = MODEL_TYPE

    def __init__(self, config: dict):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(check_config(config))
        self.config = cfg
        self.num_labels = int(cfg["num_labels"])
        H = int(cfg["hidden_size"])
        self.fold_traditional = bool(cfg["fold_traditional"])
        if self.fold_traditional:
            # Traditional characters reach the embedding and the (simplified) word lexicon as the Simplified ones the
            # model learned from: an id-to-id table filled by training.fold, the identity where nothing folds.
            self.register_buffer("simplified_ids", torch.arange(int(cfg["vocab_size"])))
        self.embed = nn.Embedding(int(cfg["vocab_size"]), int(cfg["embedding_dim"]))
        sizes = [int(cfg["embedding_dim"])] + [2 * H] * int(cfg["num_gru_layers"])
        self.grus = nn.ModuleList(BiGRULayer(sizes[i], H) for i in range(int(cfg["num_gru_layers"])))
        self.attn = nn.ModuleList(
            SelfAttentionLayer(2 * H, int(cfg["attention_heads"]), int(cfg["attention_ffn"]), float(cfg["dropout"]))
            for _ in range(int(cfg["num_attention_layers"]))
        )
        self.lexicon_buckets = int(cfg["lexicon_buckets"])
        if self.lexicon_buckets:
            # Word knowledge from an outside lexicon (training.lexicon): which dictionary words, of which type, cover
            # each token. It enters twice, into LAC's input and beside the GRUs' output, through projections that start
            # at zero so that training starts from the plain model.
            self.lexicon = LexiconMatcher(self.lexicon_buckets, int(cfg["lexicon_max_len"]))
            self.lexicon_in = nn.Linear(self.lexicon.num_features, int(cfg["embedding_dim"]), bias=False)
            self.lexicon_out = nn.Linear(self.lexicon.num_features, 2 * H, bias=False)
            nn.init.zeros_(self.lexicon_in.weight)
            nn.init.zeros_(self.lexicon_out.weight)
        self.drop = nn.Dropout(float(cfg["dropout"]))
        self.head = nn.Linear(2 * H, self.num_labels)
        self.crf = CRF(self.num_labels)

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lexicon_features: torch.Tensor | None = None) -> torch.Tensor:
        """Emissions [B, L, C]; ``lexicon_features`` (from a ``LexiconMatcher``) when an ensemble shares one."""
        input_ids = self.folded(input_ids)
        mask = attention_mask.to(torch.int64)
        lengths = mask.sum(dim=1, keepdim=True)  # [B, 1]
        pos = torch.ones_like(input_ids).cumsum(dim=1) - 1  # [B, L]
        # reverse each row's first `length` positions, keep padding in place (an involution)
        rev_index = torch.where(pos < lengths, lengths - 1 - pos, pos)
        x = self.embed(input_ids)
        if self.lexicon_buckets:
            words = lexicon_features if lexicon_features is not None else self.lexicon(input_ids, attention_mask)
            x = x + self.lexicon_in(words)
        x = self.drop(x)
        for layer in self.grus:
            x = self.drop(layer(x, rev_index))
        if self.lexicon_buckets:
            x = x + self.drop(self.lexicon_out(words))
        if len(self.attn):
            key_bias = ((1 - mask).to(x.dtype) * -10000.0)[:, None, None, :]
            for layer in self.attn:
                x = layer(x, key_bias)
        return self.head(x)

    def folded(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.simplified_ids[input_ids] if self.fold_traditional else input_ids


def check_config(config: dict) -> dict:
    """``config`` without the keys of removed features; a checkpoint that switches one on is refused."""
    on = {k: config[k] for k, off in REMOVED_FEATURES.items() if k in config and config[k] != off}
    if on:
        raise ValueError(f"the checkpoint uses {', '.join(f'{k}={v!r}' for k, v in on.items())}, a feature this "
                         f"architecture does not have (docs/experiments.md names the commit that has it)")
    return {k: v for k, v in config.items() if k not in REMOVED_FEATURES and k not in IGNORED_KEYS}


def label_config(labels: list[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": {str(i): l for i, l in enumerate(labels)},
        "label2id": {l: i for i, l in enumerate(labels)},
    }
