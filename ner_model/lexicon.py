"""The default model's word-lexicon features, computed inside the graph: ``LexiconMatcher`` and the hashes it uses.

The tables themselves are built at training time (``training.lexicon``) and travel in the checkpoint as buffers.
"""

from __future__ import annotations

import torch
from torch import nn

# Polynomial hashes of token-id n-grams, modulo a prime below 2**31 so that every product fits in int64 (in torch and
# in ONNX alike). Two hashes pick the two candidate buckets of a word, the third is the fingerprint kept in the table.
HASH_PRIME = 2_147_483_647
HASH_MULTIPLIERS = (1_000_003, 1_299_709, 15_485_863)
LEXICON_TYPES = ("PER", "LOC", "ORG", "WORD")  # bit k of a word's code: the lexicon lists it as type k


def ngram_hashes(ids: list[int]) -> tuple[int, int, int]:
    """The three hashes of one id sequence, exactly as ``LexiconMatcher`` computes them in the graph."""
    hashes = []
    for a in HASH_MULTIPLIERS:
        h = 0
        for i in ids:
            h = (h * a + i) % HASH_PRIME
        hashes.append(h)
    return tuple(hashes)


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
