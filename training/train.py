"""Training the default model: one model, or ``--members`` of them at once combined into an ensemble.

The options are declared in ``training.cli`` (``python -m training --help``, which also says how a run is stopped and
resumed).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from ner_model.architecture import LacBiGruCrf, label_config
from ner_model.data import msra_file, read_bio, vocab_file, write_tokenizer_files

from . import data as D
from . import distill
from .augment import NoiseAugmenter, mask_tokens, mention_pool, replace_mentions
from .cli import SETTINGS
from .ensemble import PROGRESS_PREFIX
from .evaluate import evaluate
from .fold import fold_into

COMBINE_MINUTES = 2.0  # kept, in an ensemble run, for loading the members, scoring the ensemble on dev and saving it
MEMBER_SETTINGS_SET_BY_ENSEMBLE = ("output", "seed", "threads", "members", "members_dir", "max_minutes", "progress",
                                   "progress_lines")
NOT_TRAINING_CONFIG = ("output", "data_dir", "progress", "progress_lines", "members_dir", "resume", "save_every",
                       "soft_labels_dir")
SESSION_SETTINGS = ("max_minutes",)  # may differ between the sessions of one resumed run
STATE_FILE = "training_state.pt"  # in --output while a run is unfinished: what --resume continues from
LAC_GRU_LAYERS = 2
LOSS_EVERY = 10  # training_log.json's "losses": the mean loss of each run of this many steps


def cut_short_warning(step: int, total: int, max_minutes: float, state: Path) -> str:
    """What a step-based run stopped by --max-minutes before its schedule ended says, in the log and on the console:
    its learning rate had not decayed, so it is another model than the command describes until it is resumed."""
    return (f"--max-minutes {max_minutes:g} stopped training at step {step} of the {total} planned, before the "
            f"learning-rate schedule ended: this model is not yet the one the command describes. Its state is saved "
            f"in {state}: run the same command again to continue from step {step} (or raise --max-minutes)")


def write_atomically(path: Path, write) -> None:
    """``write(temporary path)``, then a rename over ``path``: a process killed meanwhile leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_log(out: Path, log: dict) -> None:
    write_atomically(out / "training_log.json", lambda p: p.write_text(json.dumps(log, indent=2) + "\n"))


def run_config(values: dict) -> dict:
    """What a resumed run must share with the run it continues: the training config without the session's limits,
    as JSON values (a log's ``args`` and a state's ``config`` compare alike)."""
    return json.loads(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in values.items()
                                  if k not in NOT_TRAINING_CONFIG + SESSION_SETTINGS}))


def config_differences(saved: dict, wanted: dict) -> list[str]:
    flag = {s.name: s.flag for s in SETTINGS}
    return [f"{flag.get(k, k)} {saved.get(k)} there, {wanted.get(k)} here"
            for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]


def load_state(args) -> dict | None:
    """The state of the unfinished run in --output that this command continues, or None for a fresh start (with
    --no-resume, a state there is removed). Refuses a state saved under other settings."""
    path = Path(args.output) / STATE_FILE
    if not path.exists():
        return None
    if not args.resume:
        path.unlink()
        return None
    state = torch.load(path, weights_only=False)
    differences = config_differences(state["config"], run_config(vars(args)))
    if differences:
        raise SystemExit(f"{path} holds the state of an unfinished run (step {state['step']} of {state['total']}) "
                         f"with other settings: {'; '.join(differences)}. Run it with its own settings to resume it, "
                         f"or add --no-resume to start over")
    return state


def finished_run(directory: Path, args) -> bool:
    """Whether ``directory`` holds a run of ``args``' settings that ended its schedule (its training log says so)."""
    path = directory / "training_log.json"
    if not path.exists() or (directory / STATE_FILE).exists():
        return False
    log = json.loads(path.read_text())
    return bool(log.get("finished")) and run_config(log["args"]) == run_config(vars(args))


def plain(args) -> dict:
    """The parsed options as JSON values."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def command_line(name: str, value) -> list[str]:
    """The flag(s) that give setting ``name`` the parsed ``value``."""
    setting = SETTINGS[name]
    if isinstance(value, bool):
        return [setting.flag if value else "--no-" + setting.flag[2:]]
    if isinstance(value, tuple):
        return [setting.flag, ",".join(map(str, value))]
    return [setting.flag, str(value)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_model(args, labels, vocab_lines, tokenizer=None) -> LacBiGruCrf:
    cfg = {
        **label_config(labels),
        "vocab_size": len(vocab_lines),
        "num_gru_layers": LAC_GRU_LAYERS,
        "num_attention_layers": args.num_attention_layers,
        "dropout": args.dropout,
        "hidden_size": args.hidden_size,
        "embedding_dim": args.embedding_dim,
        "lexicon_buckets": args.lexicon_buckets if args.lexicon != "none" else 0,
        "lexicon_max_len": args.lexicon_max_len,
    }
    if args.init == "lac" and (args.hidden_size != 128 or args.embedding_dim != 128):
        raise SystemExit("--init lac needs --hidden-size 128 and --embedding-dim 128")
    model = LacBiGruCrf(cfg)
    if args.init == "lac":
        from . import lac as L

        lac = L.load_lac()
        with torch.no_grad():
            model.embed.weight.copy_(torch.from_numpy(L.bert_embedding_matrix(vocab_lines, lac)))
            # [CLS] and [SEP] have no LAC counterpart: start them at zero (a neutral input)
            model.embed.weight[D.CLS_ID].zero_()
            model.embed.weight[D.SEP_ID].zero_()
            for gru, layer in zip(model.grus, L.gru_state_dicts(lac)):
                for d in ("fwd", "bwd"):
                    getattr(gru, d).load_state_dict({k: torch.from_numpy(v) for k, v in layer[d].items()})
            if args.num_attention_layers == 0:  # the head reads LAC's GRU output directly, as LAC's own tagger does
                w, b = L.head_init(labels, lac)
                model.head.weight.copy_(torch.from_numpy(w))
                model.head.bias.copy_(torch.from_numpy(b))
            crf = L.crf_init(labels, lac)
            for k, v in crf.items():
                getattr(model.crf, k).copy_(torch.from_numpy(v))
    if args.lexicon != "none":
        _fill_lexicon(model, args, tokenizer)
    model.config["init"] = args.init
    return model


def _fill_lexicon(model, args, tokenizer) -> None:
    from .lexicon import jieba_tables

    tables = jieba_tables(tokenizer, args.lexicon_buckets, args.lexicon_max_len)
    tables.load_into(model.lexicon)
    model.config["lexicon"] = {"source": "jieba==0.42.1 dict.txt", "words": tables.words, "dropped": tables.dropped}
    print(f"lexicon: {tables.words} words in {args.lexicon_buckets} buckets ({tables.dropped} dropped)", flush=True)


def param_groups(model, args):
    groups = {"embed": [], "encoder": [], "encoder_nd": [], "head": [], "crf": []}
    for name, p in model.named_parameters():
        if name.startswith("crf."):
            groups["crf"].append(p)
        elif name.startswith("head."):
            groups["head"].append(p)
        elif name.startswith("embed."):
            groups["embed"].append(p)
        elif p.ndim < 2:
            groups["encoder_nd"].append(p)
        else:
            groups["encoder"].append(p)
    return [
        {"params": groups["embed"], "lr": args.lr, "weight_decay": 0.0},
        {"params": groups["encoder"], "lr": args.lr, "weight_decay": args.weight_decay},
        {"params": groups["encoder_nd"], "lr": args.lr, "weight_decay": 0.0},
        {"params": groups["head"], "lr": args.head_lr, "weight_decay": 0.0},
        {"params": groups["crf"], "lr": args.crf_lr, "weight_decay": 0.0},
    ]


def lr_factor(step: int, progress: float, warmup: int, warmup_frac: float) -> float:
    """Linear warm-up over the first ``warmup`` steps, then linear decay to 0 over progress from ``warmup_frac`` to 1."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 1.0 - min(1.0, max(0.0, (progress - warmup_frac) / max(1e-9, 1.0 - warmup_frac)))


def initial_model(args, labels, vocab_lines, tokenizer=None) -> LacBiGruCrf:
    """The model before its first step. With --init-seed the layers that start random are drawn from that seed, so
    members of different --seed start from the same weights."""
    if not args.init_seed:
        return build_model(args, labels, vocab_lines, tokenizer)
    torch.manual_seed(args.init_seed)
    model = build_model(args, labels, vocab_lines, tokenizer)
    torch.manual_seed(args.seed)  # dropout and token dropout follow the member's own seed
    return model


def prepare_data(args, out: Path):
    """Writes the tokenizer files into ``out`` and reads the train/dev split: (tokenizer, vocab lines, labels, train
    sentences, dev sentences)."""
    from export.checkpoint import load_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    # tokenizer: written into the checkpoint directory, then loaded from there as the exporter will load it
    vfile = vocab_file(args.data_dir)
    write_tokenizer_files(out, vfile)
    tok = load_tokenizer(out)
    D.check_vocab_ids(tok, vfile)
    vocab_lines = D.vocab_lines(out / "vocab.txt")
    sents = read_bio(msra_file("train", args.data_dir))
    train_s, dev_s = D.split_train_dev(sents, args.dev_size)
    if args.train_limit:
        train_s = train_s[: args.train_limit]
    if args.dev_limit:
        dev_s = dev_s[: args.dev_limit]
    return tok, vocab_lines, D.scheme_labels(args.tag_scheme), train_s, dev_s


def training_config(args) -> dict:
    return {k: v for k, v in plain(args).items() if k not in NOT_TRAINING_CONFIG}


def member_argv(args, seed: int, directory: Path, threads: int, minutes: float) -> list[str]:
    """The command line of one ensemble member: the run's own options, and its seed, output, share of the threads and
    time, with progress as lines for the parent's bars."""
    argv = []
    for setting in SETTINGS:
        value = getattr(args, setting.name)
        if setting.name not in MEMBER_SETTINGS_SET_BY_ENSEMBLE and value is not None:
            argv += command_line(setting.name, value)
    return argv + ["--output", str(directory), "--seed", str(seed), "--threads", str(threads), "--members", "1",
                   "--max-minutes", f"{minutes:.2f}", "--no-progress", "--progress-lines"]


def train_ensemble(args, t_start: float) -> int:
    """Trains ``--members`` models at once (one process each, the threads shared out), then saves their ensemble."""
    from ner_model.ensemble import LacBiGruCrfEnsemble

    from . import ensemble as E

    seeds = E.member_seeds(args.seed, args.members)
    member_dirs = [Path(args.members_dir) / f"seed-{s}" for s in seeds]
    threads = max(1, args.threads // args.members)
    minutes = E.remaining_minutes(t_start, args.max_minutes, COMBINE_MINUTES)

    # measured: two members of one thread each take 45 minutes for the full 12-epoch schedule on 2 cores
    need = 45.0 * max(1.0, args.members / max(1, args.threads)) * args.epochs / 12
    if need > minutes and not (args.train_limit or args.max_steps):
        cut = ("the time schedule will end theirs early (raise --max-minutes)" if args.time_schedule else
               "--max-minutes will stop them (their states are saved: the same command run again continues them)")
        print(f"warning: {args.members} members at once need about {need:.0f} minutes on {args.threads} threads; "
              f"with {minutes:.0f} {cut}", flush=True)
    print(f"ensemble of {args.members} members (seeds {', '.join(map(str, seeds))}), trained at once with {threads} "
          f"thread(s) each and {minutes:.1f} minutes at most, in {args.members_dir}", flush=True)

    def argv(seed, directory):
        return member_argv(args, seed, directory, threads, minutes)

    # a member that ended its schedule under these settings in an earlier run of the command is kept as it is
    todo = [(s, d) for s, d in zip(seeds, member_dirs)
            if not (args.resume and finished_run(d, SETTINGS.parse(argv(s, d), prog="python -m training")))]
    for s, d in zip(seeds, member_dirs):
        if (s, d) not in todo:
            print(f"member seed {s}: finished in {d} by an earlier run, kept", flush=True)
    if todo:
        E.train_members(argv, [s for s, _ in todo], [d for _, d in todo], show_progress=args.progress)

    out = Path(args.output)
    tok, _, labels, _, dev_s = prepare_data(args, out)
    members = [LacBiGruCrf.from_pretrained(d) for d in member_dirs]
    combined = LacBiGruCrfEnsemble.from_members(members)
    dev_enc = D.encode_sentences(tok, dev_s)
    scores = evaluate(combined, dev_enc, labels)
    combined.config["training"] = training_config(args)
    combined.config["dev_scores"] = scores
    combined.save_pretrained(out)
    member_logs = [json.loads((d / "training_log.json").read_text()) for d in member_dirs]
    log = {
        "args": plain(args),
        "members": [{"seed": s, "best": lg["best"], "evals": lg["evals"], "steps": lg["steps"],
                     "stopped_by": lg["stopped_by"], "finished": lg["finished"], "train_minutes": lg["train_minutes"],
                     **({"warning": lg["warning"]} if "warning" in lg else {})}
                    for s, lg in zip(seeds, member_logs)],
        "combined_dev_scores": scores,
        "train_minutes": round((time.time() - t_start) / 60, 2),
    }
    warnings = [f"member seed {s}: {lg['warning']}" for s, lg in zip(seeds, member_logs) if "warning" in lg]
    if warnings:
        log["warning"] = "; ".join(warnings)
        print(f"WARNING: {log['warning']}", flush=True)
    write_log(out, log)
    member_f1 = ", ".join(f"{lg['best']['f1']:.2f}" for lg in member_logs)
    print(f"done in {log['train_minutes']} min: members' dev F1 {member_f1}; ensemble dev F1 "
          f"{scores['overall']['f1']:.2f}; saved to {out}", flush=True)
    return 0


def train(args) -> int:
    """Runs ``python -m training`` with the parsed options."""
    t_start = time.time()
    if args.members > 1:
        return train_ensemble(args, t_start)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.output)
    state = load_state(args)
    state_path = out / STATE_FILE
    tok, vocab_lines, labels, train_s, dev_s = prepare_data(args, out)
    if args.mention_replace > 0 and labels != D.LABELS:
        raise SystemExit("--mention-replace works on BIO labels only (use --tag-scheme bio)")
    # sentences are read and cut into chunks in the corpus's BIO; the chunks' labels then take the model's scheme
    train_enc = D.encode_sentences(tok, train_s)
    dev_enc = D.encode_sentences(tok, dev_s)
    chunks = D.chunks_in_scheme(D.make_chunks(train_enc, args.max_chunk_tokens), labels)
    teacher = getattr(args, "teacher", None)  # set by python -m training.distill
    if teacher:
        chunks = distill.attach_soft_labels(args, chunks, tok, labels)
    inserted = distill.inserted_target(args, chunks) if teacher else None
    n_tokens = sum(len(c.input_ids) for c in chunks)
    print(f"train: {len(train_s)} sentences → {len(chunks)} chunks, {n_tokens} tokens; dev: {len(dev_s)} sentences "
          f"({time.time() - t_start:.0f}s)", flush=True)

    model = initial_model(args, labels, vocab_lines, tok)
    fold_into(model, vocab_lines, train_s)
    model.config["training"] = training_config(args)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, args), betas=(0.9, 0.999), eps=1e-8)
    base_lrs = [g["lr"] for g in opt.param_groups]

    rng = random.Random(args.seed)
    augment_rng = random.Random(args.seed + 1)
    token_dropout_rng = torch.Generator().manual_seed(args.seed + 2)
    pool = mention_pool(chunks) if args.mention_replace > 0 else {}
    if pool:
        print("mention replacement: " + ", ".join(f"{len(v)} {t}" for t, v in pool.items()) + " distinct mentions",
              flush=True)
    # its own generator: with noise on, the data order is the one the same seed gives without it
    noise = (NoiseAugmenter(tok, labels, args.noise_share, args.noise_kinds, args.max_chunk_tokens, args.seed + 3,
                            args.noise_split_entities)
             if args.noise_share > 0 else None)
    if noise:
        print(f"noise: {args.noise_share:g} of the chunks of each {'epoch' if args.noise_per_epoch else 'batch'}, "
              f"kinds {', '.join(args.noise_kinds)}", flush=True)
    batches_per_epoch = len(D.bucket_batches(chunks, args.batch_tokens, args.batch_size, random.Random(0)))
    total = int(math.ceil(args.epochs * batches_per_epoch))
    if args.max_steps:
        total = min(total, args.max_steps)
    warmup = int(args.warmup * total)
    print(f"{batches_per_epoch} batches per epoch; {total} steps planned", flush=True)

    log = {"args": plain(args), "evals": []}
    best = {"f1": -1.0}
    best_weights = None  # the best checkpoint's weights, kept for the state
    step, loss_sum, loss_n = 0, 0.0, 0
    first_losses, last_losses, losses, stopped = [], [], [], "steps"
    window_sum, f = 0.0, None
    epoch, position = 0, 0  # the data order's place: the epoch and the next batch of its order
    data = {"chunks": len(chunks), "tokens": n_tokens, "dev_sentences": len(dev_s)}
    t_origin = t_start  # the run's start, earlier sessions included
    if state:
        if (state["data"], state["total"]) != (data, total):
            raise SystemExit(f"{state_path}: the saved run had other training data ({state['data']}, "
                             f"{state['total']} steps) than this command ({data}, {total} steps); add --no-resume "
                             f"to start over")
        if state["best_weights"] is not None:  # the checkpoint in --output is the best one the state knows of
            model.load_state_dict(state["best_weights"])
            model.config["dev_scores"] = {"step": state["best"]["step"], **state["best"]["scores"]}
            model.save_pretrained(out)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch, position, f = state["step"], state["epoch"], state["batch"], state["lr_factor"]
        rng.setstate(state["epoch_rng"])
        log, best, best_weights = state["log"], state["best"], state["best_weights"]
        log["args"] = plain(args)
        log.setdefault("resumed_at", []).append(step)
        loss_sum, loss_n, window_sum, first_losses, last_losses, losses = state["losses"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        augment_rng.setstate(state["rng"]["mention"])
        token_dropout_rng.set_state(state["rng"]["token_dropout"])
        if noise:
            noise.rng.setstate(state["rng"]["noise"])
            noise.counts.update(state["noise_counts"])
        t_origin = t_start - state["seconds"]
        write_log(out, {**log, "best": best})
        print(f"resuming from step {step} of {total} (epoch {epoch}, batch {position}) saved in {state_path}",
              flush=True)
        del state
    bar = None
    if args.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True, mininterval=2.0)

    def do_eval():
        """Scores the model on dev; saves it when it is the best so far."""
        nonlocal loss_sum, loss_n, best_weights
        t0 = time.time()
        scores = evaluate(model, dev_enc, labels) if dev_enc else {"overall": {"precision": 0, "recall": 0, "f1": 0}}
        o = scores["overall"]
        entry = {
            "step": step,
            "epoch": round(step / batches_per_epoch, 3),
            "minutes": round((time.time() - t_origin) / 60, 2),
            "loss": round(loss_sum / max(1, loss_n), 5),
            "dev_precision": round(o["precision"], 3),
            "dev_recall": round(o["recall"], 3),
            "dev_f1": round(o["f1"], 3),
            "dev_per_type": {k: {m: round(v[m], 3) for m in ("precision", "recall", "f1")}
                             for k, v in scores.items() if k != "overall"},
            "eval_seconds": round(time.time() - t0, 1),
        }
        log["evals"].append(entry)
        loss_sum, loss_n = 0.0, 0
        msg = f"step {step} ({entry['minutes']} min) loss {entry['loss']:.4f}"
        msg += f" dev P/R/F1 {o['precision']:.2f}/{o['recall']:.2f}/{o['f1']:.2f}"
        if o["f1"] > best["f1"]:
            best.update(f1=o["f1"], step=entry["step"], scores=scores)
            model.config["dev_scores"] = {"step": entry["step"], **scores}
            model.save_pretrained(out)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            msg += " (best, saved)"
        write_log(out, {**log, "best": best})
        if bar:
            tqdm_write(msg)
        else:
            print(msg, flush=True)  # seen at once when stdout is a file

    def tqdm_write(msg):
        from tqdm import tqdm

        tqdm.write(msg)

    def save_state():
        """Everything the next step depends on, so that a resumed run goes on as this one would have."""
        noise_state = (None, {}) if not noise else epoch_noise if args.noise_per_epoch else (
            noise.rng.getstate(), dict(noise.counts))
        write_atomically(state_path, lambda p: torch.save({
            "config": run_config(vars(args)), "data": data, "total": total,
            "step": step, "epoch": epoch, "batch": position, "epoch_rng": epoch_rng, "lr_factor": f,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "mention": augment_rng.getstate(), "token_dropout": token_dropout_rng.get_state(),
                    "noise": noise_state[0]},
            "noise_counts": noise_state[1],
            "losses": (loss_sum, loss_n, window_sum, first_losses, last_losses, losses),
            "log": log, "best": best, "best_weights": best_weights,
            "seconds": time.time() - t_origin,
        }, p))

    t_train = time.time()
    # keep ~1.5 minutes (at least 4 % of the limit) for the final evaluation and save
    reserve = max(90.0, 0.04 * args.max_minutes * 60)
    budget = max(60.0, t_start + args.max_minutes * 60 - reserve - t_train)
    warmup_frac = warmup / max(1, total)
    # a --time-schedule run follows wall time, which a resumed run could not repeat: it saves no state
    resumable = not args.time_schedule
    while step < total and stopped == "steps":
        epoch_rng = rng.getstate()  # the epoch's order is drawn again from here on resume
        epoch_chunks = chunks
        if noise and args.noise_per_epoch:  # the epoch's noise too: its generator is saved as it was here
            epoch_noise = (noise.rng.getstate(), dict(noise.counts))
            epoch_chunks = noise(chunks)
        batches = D.bucket_batches(epoch_chunks, args.batch_tokens, args.batch_size, rng)
        while position < len(batches) and step < total:
            time_progress = (time.time() - t_train) / budget
            if time_progress >= 1.0:
                stopped = "max-minutes"
                if resumable:
                    save_state()
                break
            progress = step / total
            if args.time_schedule:
                progress = max(progress, time_progress)
            f = lr_factor(step, progress, warmup, warmup_frac)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            batch_chunks = [epoch_chunks[i] for i in batches[position]]
            position += 1
            if noise and not args.noise_per_epoch:
                batch_chunks = noise(batch_chunks)
            if pool:
                batch_chunks = [replace_mentions(c, pool, augment_rng, args.mention_replace, args.max_chunk_tokens)
                                for c in batch_chunks]
            ids, mask, pos, wmask, lab = (torch.from_numpy(a) for a in D.collate(batch_chunks))
            ids = mask_tokens(ids, mask, args.token_dropout, token_dropout_rng)
            if teacher:
                soft, have = (torch.from_numpy(a) for a in D.collate_soft(batch_chunks, len(labels), inserted))
                loss = distill.distillation_loss(model, ids, mask, pos, wmask, lab, soft, have, args.distill_weight,
                                                 args.distill_temperature)
            else:
                loss = model.loss(ids, mask, pos, wmask, lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            step += 1
            lv = float(loss.detach())
            loss_sum += lv
            loss_n += 1
            window_sum += lv
            if step % LOSS_EVERY == 0:
                losses.append(window_sum / LOSS_EVERY)
                window_sum = 0.0
            if len(first_losses) < 20:
                first_losses.append(lv)
            last_losses.append(lv)
            del last_losses[:-20]
            if args.progress_lines and (step % 20 == 0 or step == total):
                print(f"{PROGRESS_PREFIX}{step} {total}", flush=True)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.3f}", lr=f"{f:.2f}", best=f"{best['f1']:.2f}", refresh=False)
            if args.eval_every and step % args.eval_every == 0 and step < total:
                do_eval()
            if resumable and step % args.save_every == 0 and step < total:
                save_state()
        if position == len(batches):
            epoch, position = epoch + 1, 0
    if loss_n or not log["evals"] or log["evals"][-1]["step"] != step:
        do_eval()
    if bar:
        bar.close()
    log["stopped_by"] = stopped
    log["finished"] = stopped == "steps" or args.time_schedule
    if not log["finished"]:
        log["warning"] = cut_short_warning(step, total, args.max_minutes, state_path)
        print(f"WARNING: {log['warning']}", flush=True)
    log["final_lr_factor"] = round(f, 4) if f is not None else None
    log["steps"] = step
    log["first_losses"] = first_losses
    log["last_losses"] = last_losses
    log["losses_every"] = LOSS_EVERY
    log["losses"] = losses
    if noise:
        log["noise_texts"] = dict(noise.counts)
    log["train_minutes"] = round((time.time() - t_origin) / 60, 2)
    write_log(out, {**log, "best": best})
    if log["finished"]:
        state_path.unlink(missing_ok=True)
    print(f"done: {step} steps in {log['train_minutes']} min; best dev F1 {best['f1']:.2f} at step {best.get('step')}; "
          f"saved to {out}", flush=True)
    return 0
