"""The training commands' settings and entry points.

``python -m training`` trains the default Chinese NER model (LAC BiGRU + CRF, on MSRA, on CPU);
``python -m training.evaluate`` scores a checkpoint in process. Every flag is also an environment variable
(``--epochs`` ↔ ``NER_TRAIN_EPOCHS``); the command line wins over the environment.

Stopping and resuming: a run saves its whole state (weights, optimizer, learning-rate step, every random generator,
its place in the data order, the best checkpoint and the log so far) to training_state.pt in --output every
--save-every steps and when --max-minutes stops it. Killed or stopped, it continues where that state was when the
same command runs again: the resumed run logs the losses and dev scores of an uninterrupted one and ends with the same
weights (same seed and --threads). Only --max-minutes may differ; other settings are refused, and --no-resume starts
over. An ensemble (--members) resumes each member from --members-dir/seed-<n>/ and keeps the members that finished.
The state is removed when the schedule ends. A --time-schedule run follows wall time, so it saves no state.
"""

from __future__ import annotations

from pathlib import Path

from ner_client.settings import Setting, SettingGroup, boolean, named_type, non_negative_int, positive_int, word_list
from ner_model.data import DATA_DIR
from ner_model.perturb import PIECES

NOISE_KINDS = (*PIECES, "joined", "traditional")


@named_type("number 0–1")
def share(text) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"a share is from 0 to 1, not {text}")
    return value


@named_type("list")
def noise_kind_list(text) -> tuple[str, ...]:
    kinds = word_list(text)
    unknown = [k for k in kinds if k not in NOISE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown kind {', '.join(unknown)} (kinds: {', '.join(NOISE_KINDS)})" if unknown
                         else f"name at least one kind of {', '.join(NOISE_KINDS)}")
    return kinds


SETTINGS = SettingGroup("NER_TRAIN_", (
    Setting("output", Path("models/teacher"), "checkpoint directory (the best dev-F1 checkpoint is saved here)",
            type=Path),
    DATA_DIR,
    Setting("init", "lac", "encoder initialisation: lac (pretrained Baidu LAC) or random", choices=("lac", "random")),
    Setting("epochs", 12.0, "passes over the training chunks (fractions allowed)", type=float),
    Setting("max_steps", 0, "stop after this many steps (0: no limit beyond --epochs)", type=non_negative_int),
    Setting("max_minutes", 45.0, "wall-time limit of the whole command, data loading and final save included: a "
            "safety stop; a run it stops before its step schedule ends saves its state and warns in its output and "
            "training_log.json, and the same command continues it (--resume)", type=float),
    Setting("save_every", 500, "steps between saves of the run's state (training_state.pt in --output), which a "
            "killed or stopped run resumes from", type=positive_int),
    Setting("resume", True, "continue the unfinished run whose state --output holds, when its settings are this "
            "command's (--max-minutes aside; others are refused); --no-resume: start over", type=boolean),
    Setting("dev_size", 3000, "the last N training sentences form the dev split", type=non_negative_int),
    Setting("train_limit", 0, "use only the first N training sentences (0: all; for smoke tests)",
            type=non_negative_int),
    Setting("dev_limit", 0, "use only the first N dev sentences (0: all)", type=non_negative_int),
    Setting("time_schedule", False, "the learning rate decays by the larger of step and wall-time progress, so a "
            "slow CPU still ends with a fully decayed schedule within --max-minutes, and a machine of another speed "
            "gives another model (the shipped checkpoint was trained so); off: by steps only, the same seed and "
            "--threads giving the same model", type=boolean),
    Setting("batch_tokens", 4096, "padded tokens per batch at most", type=positive_int),
    Setting("batch_size", 64, "chunks per batch at most", type=positive_int),
    Setting("max_chunk_tokens", 128, "long sentences are cut into chunks of at most this many tokens",
            type=positive_int),
    Setting("lr", 3e-3, "peak learning rate of the encoder (AdamW)", type=float),
    Setting("head_lr", 5e-3, "peak learning rate of the emission head", type=float),
    Setting("crf_lr", 2e-2, "peak learning rate of the CRF", type=float),
    Setting("weight_decay", 0.0, "AdamW weight decay (not on the embedding, biases, norms or the CRF)", type=float),
    Setting("warmup", 0.03, "linear warm-up, fraction of the steps (then linear decay to 0)", type=float),
    Setting("grad_clip", 5.0, "gradient norm clip (0: none)", type=float),
    Setting("dropout", 0.1, "dropout on embeddings and between layers", type=float),
    Setting("num_attention_layers", 1, "self-attention layers on top of LAC's two GRU layers",
            type=non_negative_int),
    Setting("tag_scheme", "bioes", "word tags the model learns: bio (the corpus's) or bioes (E ends a multi-word "
            "entity, S is a one-word entity); the serving decoder reads either from the checkpoint's labels",
            choices=("bio", "bioes")),
    Setting("mention_replace", 0.0, "probability of swapping each training entity, per batch, for another training "
            "entity of its type (0: off; training/augment.py)", type=float),
    Setting("token_dropout", 0.0, "probability of hiding each real training token as [UNK], per batch (0: off; "
            "training/augment.py)", type=float),
    Setting("noise_share", 0.0, "share of the training chunks perturbed, per batch (or per epoch: "
            "--noise-per-epoch), by one kind of --noise-kinds and tokenised again (0: off; training/augment.py)", type=share),
    Setting("noise_per_epoch", False, "draw the --noise-share of perturbed chunks once an epoch, over all the "
            "chunks, before they are cut into batches by length; off: that share of each batch, after it is cut, so "
            "a batch pads its rows to its longest perturbed chunk (a joined text is 2 to 4 chunks long), which "
            "halves the steps per minute (docs/experiments.md)", type=boolean),
    Setting("noise_kinds", NOISE_KINDS, "noise kinds, drawn evenly: emoji, rare (characters outside the vocabulary: "
            "[UNK] runs), latin (words, URLs, handles, numbers), width (full-/half-width variants), space (spaces and "
            "line breaks), pieces in 2 to 25 % of the gaps outside entities, tagged O; joined (2 to 4 chunks as one "
            "text); traditional (OpenCC s2t)", type=noise_kind_list),
    Setting("noise_split_entities", 0.0, "probability that a piece of an emoji, rare, latin or width text lands "
            "inside an entity of two or more characters, which is then tagged O: the model learns that a name does "
            "not run through a foreign piece (0: off; training/augment.py)", type=share),
    Setting("lexicon", "jieba", "jieba: an outside word lexicon (jieba's dictionary with its person/place/"
            "organisation tags) marks the dictionary words covering each token (training/lexicon.py); none: off",
            choices=("jieba", "none")),
    Setting("lexicon_buckets", 1 << 20, "hash-table size of the lexicon (each bucket: a 4-byte fingerprint, a "
            "1-byte code)", type=positive_int),
    Setting("lexicon_max_len", 8, "longest lexicon word, in tokens", type=positive_int),
    Setting("hidden_size", 128, "GRU hidden size per direction (128 with --init lac)", type=positive_int),
    Setting("embedding_dim", 128, "character embedding size (128 with --init lac)", type=positive_int),
    Setting("eval_every", 700, "steps between dev evaluations (0: at the end only)", type=non_negative_int),
    Setting("seed", 13, "random seed (ensemble members: seed, seed + 1, ...)", type=int),
    Setting("init_seed", 0, "seed of the layers that start random (self-attention, head); 0: --seed. Ensemble "
            "members given one --init-seed start from the same weights and differ only in data order and dropout",
            type=int),
    Setting("members", 1, "models trained at once from consecutive seeds and served as one (ner_model/ensemble.py; "
            "2 members of the full schedule take 45 to 75 minutes on 2 cores)", type=positive_int),
    Setting("members_dir", Path("build/training-members"), "where ensemble members are trained, each in seed-<n>/ "
            "(kept for inspection, not needed to serve)", type=Path),
    Setting("threads", 2, "torch intra-op threads", type=positive_int),
    Setting("progress", True, "a tqdm progress bar", type=boolean),
    Setting("progress_lines", False, "print machine-readable '@progress <step> <total>' lines (the ensemble run "
            "starts its members with it)", type=boolean),
), "training")

EVALUATE_SETTINGS = SettingGroup("NER_TRAIN_", (
    Setting("model", Path("models/default"), "checkpoint to score", type=Path, env="NER_CHECKPOINT"),
    DATA_DIR,
    Setting("split", "dev", "dev (the training run's dev split) or test (MSRA test)", choices=("dev", "test")),
    Setting("dev_size", None, "size of the dev split", type=non_negative_int,
            shown="the checkpoint's training config"),
    SETTINGS["threads"],
    Setting("output", None, "write the scores as JSON here", type=Path, env="NER_TRAIN_SCORES_OUTPUT"),
), "in-process scoring")


def parse_args(argv=None):
    return SETTINGS.parse(argv, prog="python -m training", description=__doc__)


def main(argv=None) -> int:
    from .train import train

    return train(parse_args(argv))


def evaluate_main(argv=None) -> int:
    from .evaluate import score_checkpoint

    args = EVALUATE_SETTINGS.parse(argv, prog="python -m training.evaluate", description=__doc__)
    return score_checkpoint(args)

