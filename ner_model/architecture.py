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
    "bigram_buckets": 0,
    "bigram_dim": 64,
    "lac_features": 0,
    "lac_tags": 59,
    "lexicon_buckets": 0,
    "lexicon_max_len": 8,
}

# Polynomial hashes of token-id n-grams, modulo a prime below 2**31 so that every product fits in int64 (in torch and
# in ONNX alike). Two hashes pick the two candidate buckets of a word, the third is the fingerprint kept in the table.
HASH_PRIME = 2_147_483_647
HASH_MULTIPLIERS = (1_000_003, 1_299_709, 15_485_863)
LEXICON_TYPES = ("PER", "LOC", "ORG", "WORD")  # bit k of a word's code: the lexicon lists it as type k
CRF_PARAMETERS = ("transitions", "start_transitions", "end_transitions")  # the keys of crf.safetensors


def ngram_hashes(ids: list[int]) -> tuple[int, int, int]:
    """The three hashes of one id sequence, exactly as ``LexiconMatcher`` computes them in the graph."""
    hashes = []
    for a in HASH_MULTIPLIERS:
        h = 0
        for i in ids:
            h = (h * a + i) % HASH_PRIME
        hashes.append(h)
    return tuple(hashes)


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


class LexiconMatcher(nn.Module):
    """Marks, for every token, which lexicon words of 2..``max_len`` tokens begin, continue or end there.

    The lexicon lives in two buffers (so it travels inside the checkpoint and the ONNX file): a table of ``buckets``
    fingerprints and one of type codes, where each word sits in one of its two candidate buckets (cuckoo placement,
    ``training.lexicon``). Every n-gram of the input is hashed in the graph and looked up in both buckets; a fingerprint
    match sets the word's type bits. Output ``[B, L, 3 * len(LEXICON_TYPES)]``: log(1 + count) of words of each type
    that Begin / are in the Middle of / End at the token.

    The graph is built from whole-tensor operations so that it stays a few dozen ONNX nodes, whatever ``max_len``:
    one gather takes the ``max_len`` tokens that start and that end at every position, one product with a constant
    table of powers gives every n-gram's polynomial hashes (the terms stay below 2**49, so int64 holds the sum
    before the one modulo), and one lookup finds the words both by their first and by their last token. The words a
    token lies strictly inside are then those begun at or before it, minus those ended at or before it, minus those
    begun at it (two cumulative sums): no shifted copies per word length.
    """

    def __init__(self, buckets: int, max_len: int):
        super().__init__()
        self.buckets, self.max_len = int(buckets), int(max_len)
        self.register_buffer("fingerprints", torch.full((self.buckets,), -1, dtype=torch.int32))
        self.register_buffer("codes", torch.zeros(self.buckets, dtype=torch.uint8))
        n_types = len(LEXICON_TYPES)
        bits = [[float((code >> k) & 1) for k in range(n_types)] for code in range(2 ** n_types)]
        self.register_buffer("code_bits", torch.tensor(bits), persistent=False)
        reach = self.max_len - 1
        # positions, in a row padded with `reach` zeros on both sides, of token t+i (ahead) and of token t-i (behind)
        offsets = [reach + i for i in range(self.max_len)] + [reach - i for i in range(self.max_len)]
        self.register_buffer("window_offsets", torch.tensor(offsets), persistent=False)
        # [side, i, n - 2, hash]: the power of the hash's multiplier that the i-th token of the window takes in the
        # hash of the n-gram starting (side 0: token t+i is the n-gram's i-th) or ending (side 1: token t-i is its
        # (n-1-i)-th) at t; 0 past the n-gram
        lengths = range(2, self.max_len + 1)
        powers = torch.zeros((2, self.max_len, len(lengths), len(HASH_MULTIPLIERS)), dtype=torch.int64)
        for g, n in enumerate(lengths):
            for i in range(n):
                for k, a in enumerate(HASH_MULTIPLIERS):
                    powers[0, i, g, k] = pow(a, n - 1 - i, HASH_PRIME)
                    powers[1, i, g, k] = pow(a, i, HASH_PRIME)
        self.register_buffer("hash_powers", powers, persistent=False)
        self.register_buffer("ngram_lengths", torch.tensor(list(lengths)), persistent=False)

    @property
    def num_features(self) -> int:
        return 3 * len(LEXICON_TYPES)

    def _lookup(self, h1, h2, h3):
        b1, b2 = torch.remainder(h1, self.buckets), torch.remainder(h2, self.buckets)
        hit1 = (self.fingerprints[b1].to(torch.int64) == h3).to(torch.int64)
        hit2 = ((self.fingerprints[b2].to(torch.int64) == h3) & (b2 != b1)).to(torch.int64)
        code = self.codes[b1].to(torch.int64) * hit1 + self.codes[b2].to(torch.int64) * hit2
        return self.code_bits[code.clamp(max=self.code_bits.shape[0] - 1)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(torch.int64)
        ids = input_ids * mask
        pad = ids.new_zeros((ids.shape[0], self.max_len - 1))
        window = torch.arange(ids.shape[1]).unsqueeze(1) + self.window_offsets  # [L, 2 * max_len]
        padded = torch.stack([torch.cat([pad, ids, pad], dim=1), torch.cat([pad, mask, pad], dim=1)])
        grams = padded[:, :, window].unflatten(-1, (2, self.max_len))  # [ids | mask, B, L, side, max_len]
        hashes = torch.remainder((grams[0].unsqueeze(-1).unsqueeze(-1) * self.hash_powers).sum(dim=3), HASH_PRIME)
        # an n-gram counts when all its n tokens are real (the running count of real tokens in the window reaches n)
        inside = grams[1].cumsum(dim=-1)[..., 1:] == self.ngram_lengths  # [B, L, side, n - 2]
        found = self._lookup(hashes[..., 0], hashes[..., 1], hashes[..., 2]) * inside.unsqueeze(-1).to(torch.float32)
        begin, end = found.sum(dim=3).unbind(dim=2)  # words whose first / last token is here, by type
        middle = begin.cumsum(dim=1) - end.cumsum(dim=1) - begin
        return torch.log1p(torch.cat([begin, middle, end], dim=-1))


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
        cfg.update(config)
        self.config = cfg
        self.num_labels = int(cfg["num_labels"])
        H = int(cfg["hidden_size"])
        self.embed = nn.Embedding(int(cfg["vocab_size"]), int(cfg["embedding_dim"]))
        sizes = [int(cfg["embedding_dim"])] + [2 * H] * int(cfg["num_gru_layers"])
        self.grus = nn.ModuleList(BiGRULayer(sizes[i], H) for i in range(int(cfg["num_gru_layers"])))
        self.attn = nn.ModuleList(
            SelfAttentionLayer(2 * H, int(cfg["attention_heads"]), int(cfg["attention_ffn"]), float(cfg["dropout"]))
            for _ in range(int(cfg["num_attention_layers"]))
        )
        self.bigram_buckets = int(cfg["bigram_buckets"])
        if self.bigram_buckets:
            # hashed character bigrams (left and right), added to the character embedding through a projection
            self.bigram = nn.Embedding(self.bigram_buckets, int(cfg["bigram_dim"]))
            nn.init.zeros_(self.bigram.weight)  # unseen bigrams contribute nothing
            self.bigram_proj = nn.Linear(2 * int(cfg["bigram_dim"]), int(cfg["embedding_dim"]), bias=False)
        self.lac_features = int(cfg["lac_features"])
        if self.lac_features:
            # A frozen copy of LAC (embedding, BiGRUs, its own tag layer): fine-tuning makes the trainable copy forget
            # what LAC learnt from its large corpus (42 % of dev entities never occur in MSRA train); this copy keeps
            # it. Its hidden states and tag probabilities (bounded, unlike its raw scores) join through a projection
            # that starts at zero, so training starts from the plain model.
            E = int(cfg["embedding_dim"])
            self.lac_embed = nn.Embedding(int(cfg["vocab_size"]), E)
            self.lac_grus = nn.ModuleList(BiGRULayer(E if i == 0 else 2 * H, H) for i in range(2))
            self.lac_out = nn.Linear(2 * H, int(cfg["lac_tags"]))
            for module in (self.lac_embed, self.lac_grus, self.lac_out):
                module.requires_grad_(False)
            self.lac_proj = nn.Linear(2 * H + int(cfg["lac_tags"]), 2 * H)
            nn.init.zeros_(self.lac_proj.weight)
            nn.init.zeros_(self.lac_proj.bias)
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
        mask = attention_mask.to(torch.int64)
        lengths = mask.sum(dim=1, keepdim=True)  # [B, 1]
        pos = torch.ones_like(input_ids).cumsum(dim=1) - 1  # [B, L]
        # reverse each row's first `length` positions, keep padding in place (an involution)
        rev_index = torch.where(pos < lengths, lengths - 1 - pos, pos)
        x = self.embed(input_ids)
        if self.bigram_buckets:
            ids = input_ids * mask  # padding reads as id 0
            zero = torch.zeros_like(ids[:, :1])
            prev = torch.cat([zero, ids[:, :-1]], dim=1)
            nxt = torch.cat([ids[:, 1:], zero], dim=1)
            v = int(self.config["vocab_size"])
            left = self.bigram(torch.remainder(prev * v + ids, self.bigram_buckets))
            right = self.bigram(torch.remainder(ids * v + nxt, self.bigram_buckets))
            x = x + self.bigram_proj(torch.cat([left, right], dim=-1))
        if self.lexicon_buckets:
            words = lexicon_features if lexicon_features is not None else self.lexicon(input_ids, attention_mask)
            x = x + self.lexicon_in(words)
        x = self.drop(x)
        for layer in self.grus:
            x = self.drop(layer(x, rev_index))
        if self.lexicon_buckets:
            x = x + self.drop(self.lexicon_out(words))
        if self.lac_features:
            y = self.lac_embed(input_ids)
            for layer in self.lac_grus:
                y = layer(y, rev_index)
            x = x + self.drop(self.lac_proj(torch.cat([y, self.lac_out(y).softmax(dim=-1)], dim=-1)))
        if len(self.attn):
            key_bias = ((1 - mask).to(x.dtype) * -10000.0)[:, None, None, :]
            for layer in self.attn:
                x = layer(x, key_bias)
        return self.head(x)


def label_config(labels: list[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": {str(i): l for i, l in enumerate(labels)},
        "label2id": {l: i for i, l in enumerate(labels)},
    }
