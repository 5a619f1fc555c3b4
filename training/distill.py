"""Distillation: one student of the default model's architecture learns from a teacher's emissions as well as the
gold tags, on the training text and its noisy copies.

``python -m training.distill --teacher models/teacher --output build/distill/student`` takes every ``python -m
training`` option (one member; noise with ``--noise-share``) and trains as that command does, stopped and resumed
the same way. The teacher is any checkpoint the exporter reads (``export.checkpoint``) with the student's tokenizer
vocabulary and labels. Its emissions are computed once per teacher and training text, on the clean training chunks,
and cached in ``--soft-labels-dir``.

What the student matches: per word, the distribution ``softmax(emissions / T)`` of the teacher, by KL divergence
scaled by ``T²`` (Hinton et al.), weighted by ``--distill-weight`` beside the CRF's negative log-likelihood of the
gold tags. The softmax makes the target blind to a per-word offset, which a CRF's emissions do not define. Noise is
added after the teacher has spoken (``training.augment``): a word of the noisy text whose first character is one of
the clean text's word starts keeps the teacher's emissions; inserted pieces have none and learn from their gold O
alone, or, with ``--inserted-target o``, also match the teacher's mean emissions over the gold-O words of the
training text, so that the KL term too teaches that a piece is no part of a name. So the student learns the
teacher's clean-text judgement together with what the teacher never learnt: ignoring the noise.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ner_client.settings import Setting, SettingGroup, positive_float

from . import data as D
from .cli import SETTINGS

SOFT_LABELS_VERSION = "1"  # part of the cache key: raise it when the way soft labels are computed changes
TEACHER_BATCH_TOKENS = 8192

TEACHER_SETTINGS = SettingGroup("NER_TRAIN_", (
    Setting("teacher", Path("models/teacher"), "the teacher checkpoint: any checkpoint the exporter reads, with the "
            "student's vocabulary and labels", type=Path),
    Setting("distill_weight", 1.0, "weight of the teacher's soft labels beside the gold tags' CRF loss",
            type=positive_float),
    Setting("distill_temperature", 1.0, "softmax temperature of the teacher's and the student's emissions",
            type=positive_float),
    Setting("inserted_target", "none", "what the student matches at the words of inserted noise, which the teacher "
            "never saw: none (their gold O alone) or o (the teacher's mean emissions over the gold-O words of the "
            "training text)", choices=("none", "o")),
    Setting("soft_labels_dir", Path("build/distill/soft-labels"), "cache of the teacher's emissions, one file per "
            "teacher and training text", type=Path),
), "distillation")
# every option of python -m training, the student's checkpoint kept out of models/default unless asked
DISTILL_SETTINGS = SettingGroup("NER_TRAIN_", (
    *(replace(s, default=Path("build/distill/student")) if s.name == "output" else s for s in SETTINGS),
    *TEACHER_SETTINGS,
), "distillation")


# A teacher's files that do not shape its emissions: a card or log edit must not send it through the corpus again.
_NOT_SCORING = ("training_state.pt", "training_log.json", "*.md")


def _teacher_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*")
                       if p.is_file() and not any(p.match(pattern) for pattern in _NOT_SCORING)):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _chunks_digest(chunks: list[D.Chunk]) -> str:
    digest = hashlib.sha256()
    for c in chunks:
        digest.update(c.input_ids.tobytes() + b"|" + c.word_pos.tobytes() + b"/")
    return digest.hexdigest()


def load_teacher(directory: Path, tokenizer, labels: list[str]):
    """The teacher's emission network and the index of each student label among its outputs; refuses a teacher whose
    vocabulary or label set differs from the student's. A teacher without the student's whitespace token
    (models/teacher) reads that token's row where the text holds whitespace, which MSRA's training text never does."""
    from export.checkpoint import load_checkpoint
    from export.tokenizer_files import vocabulary

    teacher = load_checkpoint(Path(directory))
    if (vocabulary(teacher.tokenizer, teacher.tokenizer_options.get("whitespace_token"))
            != vocabulary(tokenizer, D.WHITESPACE_TOKEN)):
        raise SystemExit(f"teacher {directory}: its tokenizer vocabulary is not the student's (bert-base-chinese): "
                         f"soft labels are per token, so both must tokenise alike")
    if sorted(teacher.labels) != sorted(labels):
        raise SystemExit(f"teacher {directory}: labels {', '.join(teacher.labels)}; the student learns "
                         f"{', '.join(labels)} (choose --tag-scheme to match)")
    return teacher.model.eval(), [teacher.labels.index(label) for label in labels]


@torch.no_grad()
def teacher_emissions(model, order: list[int], chunks: list[D.Chunk], progress: bool) -> list[np.ndarray]:
    """The teacher's emissions at each chunk's words ([n_words, C] float32), in batches of similar length."""
    batches = D.bucket_batches(chunks, TEACHER_BATCH_TOKENS, 256, rng=None, shuffle=False)
    out: list[np.ndarray | None] = [None] * len(chunks)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(chunks), desc="teacher", unit="chunk", dynamic_ncols=True, mininterval=2.0)
    t0, done = time.time(), 0
    for batch in batches:
        ids, mask, pos, _, _ = (torch.from_numpy(a) for a in D.collate([chunks[i] for i in batch]))
        em = model(ids, mask)[..., order]
        words = em.gather(1, pos.unsqueeze(-1).expand(-1, -1, em.shape[-1])).float().numpy()
        for row, i in enumerate(batch):
            out[i] = words[row, : len(chunks[i].word_pos)].copy()
        done += len(batch)
        if bar:
            bar.update(len(batch))
        elif done == len(chunks) or len(batch) and done // 5000 != (done - len(batch)) // 5000:
            print(f"teacher: {done}/{len(chunks)} chunks ({time.time() - t0:.0f}s)", flush=True)
    if bar:
        bar.close()
    return out


def attach_soft_labels(args, chunks: list[D.Chunk], tokenizer, labels: list[str]) -> list[D.Chunk]:
    """The training chunks with the teacher's word emissions, from the cache when this teacher already scored this
    text."""
    key = hashlib.sha256(f"{SOFT_LABELS_VERSION}|{_teacher_digest(args.teacher)}|{_chunks_digest(chunks)}|"
                         f"{','.join(labels)}".encode()).hexdigest()[:16]
    path = Path(args.soft_labels_dir) / f"{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            flat, counts = cached["emissions"].astype(np.float32), cached["words"]
        print(f"teacher's emissions from {path}", flush=True)
    else:
        t0 = time.time()
        # building the teacher draws random initial weights: the student's run must not depend on whether it did
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            model, order = load_teacher(args.teacher, tokenizer, labels)
            soft = teacher_emissions(model, order, chunks, args.progress)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        flat, counts = np.concatenate(soft), np.asarray([len(s) for s in soft])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, emissions=flat.astype(np.float16), words=counts)
        tmp.replace(path)
        flat = flat.astype(np.float16).astype(np.float32)  # the cached precision, so a resumed run sees the same
        print(f"teacher {args.teacher}: emissions of {len(chunks)} chunks in {time.time() - t0:.0f}s, cached in "
              f"{path}", flush=True)
    if counts.tolist() != [len(c.word_pos) for c in chunks]:
        raise SystemExit(f"{path} does not match the training chunks; delete it")
    ends = np.cumsum(counts)
    return [replace(c, soft=flat[end - n:end]) for c, n, end in zip(chunks, counts, ends)]


def inserted_target(args, chunks: list[D.Chunk]) -> np.ndarray | None:
    """The emissions the student matches at inserted noise (``--inserted-target``), or None."""
    if args.inserted_target == "none":
        return None
    rows = [c.soft[c.labels == D.OUTSIDE_ID] for c in chunks if c.soft is not None]
    mean = np.concatenate(rows).mean(axis=0).astype(np.float32)
    print(f"inserted noise matches the teacher's mean gold-O emissions {np.round(mean, 2).tolist()}", flush=True)
    return mean


def distillation_loss(model, ids, mask, pos, wmask, labels, soft, have, weight: float, temperature: float):
    """The CRF's mean negative log-likelihood per scored word plus ``weight`` × the mean KL divergence, over the
    words with soft labels, from the teacher's to the student's tempered emission softmax (× T²)."""
    em = model.word_emissions(ids, mask, pos)
    nll = model.crf.nll(em, labels, wmask).sum() / wmask.sum().clamp(min=1)
    if not have.any():
        return nll
    student = F.log_softmax(em[have] / temperature, dim=-1)
    target = F.log_softmax(soft[have] / temperature, dim=-1)
    kl = F.kl_div(student, target, log_target=True, reduction="batchmean") * temperature ** 2
    return nll + weight * kl


def main(argv=None) -> int:
    from .train import train

    args = DISTILL_SETTINGS.parse(argv, prog="python -m training.distill", description=__doc__)
    if args.members != 1:
        raise SystemExit("a student is one model: --members 1")
    if args.mention_replace:
        raise SystemExit("--mention-replace changes a chunk's words after the teacher scored them: leave it at 0")
    return train(args)


if __name__ == "__main__":
    raise SystemExit(main())
