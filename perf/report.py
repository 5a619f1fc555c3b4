"""The serving targets, computed from one run's results, and the Markdown report."""

from __future__ import annotations

from .memory import mb
from .pipeline_work import GROUPS, PHASES
from .servers import encoder_stats

SECTIONS = [
    "Targets",
    "Pipeline work",
    "Machine and versions",
    "Machine ceiling",
    "Side by side",
    "Triton through the client SDK",
    "gRPC and HTTP",
    "Where the time goes",
    "perf_analyzer",
    "locust",
    "Memory",
    "INT8 builds",
    "Fused graphs",
    "Tuning",
    "Plots",
    "Settings",
]
PSS_LIMIT_BYTES = 0.9e9
# The in-process files of a run (baselines "ort_<key>"), each with its label and, for INT8, the tuning row that served
# it through Triton (the INT8 build a row served, "static" for every row but the INT8 variants).
BUILDS = (("fp32", "FP32", None), ("int8", "INT8 (static, served)", "static"),
          ("int8_dynamic", "INT8 dynamic", "dynamic"), ("int8_reduce_range", "INT8 reduce_range (static)", "reduce_range"))


def best_point(points: list[dict]) -> dict:
    return max(points, key=lambda p: p.get("throughput_per_s", 0)) if points else {}


def point_at(points: list[dict], concurrency: int) -> dict:
    return next((p for p in points if p.get("concurrency") == concurrency), {})


def _row(target: str, size: str, measured: str, ratio, limit: str, met, note: str = "") -> dict:
    return {"target": target, "size": size, "measured": measured,
            "ratio": None if ratio is None else round(ratio, 3), "threshold": limit,
            "met": met, "note": note}


def _at_least(target: str, size: str, measured: str, ratio: float, limit: float, note: str) -> dict:
    short = "" if ratio >= limit else f"missed: {limit / ratio:.2f}× short"
    return _row(target, size, measured, ratio, f"≥ {limit:g}", ratio >= limit, "; ".join(x for x in (short, note) if x))


def _at_most(target: str, size: str, measured: str, ratio: float, limit: float, note: str) -> dict:
    over = "" if ratio <= limit else f"missed: {ratio / limit:.2f}× over"
    return _row(target, size, measured, ratio, f"≤ {limit:g}", ratio <= limit, "; ".join(x for x in (over, note) if x))


def server_points(size_results: dict, model: str) -> tuple[list[dict], str]:
    """The points server capacity is judged by: perf_analyzer over gRPC when it ran, else the client SDK's."""
    runs = [r for r in size_results.get("perf_analyzer", {}).get("runs", [])
            if r["model"] == model and r["protocol"] == "grpc" and "error" not in r]
    if runs:
        return runs, "perf_analyzer"
    return size_results["triton_sdk"][model], "client SDK"


def _capacity(size_results: dict, model: str, session: dict) -> tuple[float, str]:
    """Served best over the session's throughput, and how it was measured."""
    points, tool = server_points(size_results, model)
    best = best_point(points)
    ratio = best["throughput_per_s"] / session["throughput_per_s"]
    return ratio, (f"{best['throughput_per_s']}/s at c={best['concurrency']} ({tool}) vs {session['throughput_per_s']}/s"
                   f" ({ratio:.2f})")


def _ceiling_note(size_results: dict, precision: str, session: dict) -> str:
    ceiling = size_results.get("gemm_ceiling")
    if not ceiling:
        return ""
    return (f"the GEMM-bound ceiling ({ceiling['texts_per_s'][precision]:.1f}/s) is "
            f"{ceiling['texts_per_s'][precision] / session['throughput_per_s']:.2f}× the session")


def _work_note(size_results: dict, session: dict) -> str:
    work = size_results.get("pipeline_work")
    if not work:
        return ""
    return (f"the pipeline-work ceiling ({work['ceiling_texts_per_s']:.1f}/s, *Pipeline work*) is "
            f"{work['ceiling_texts_per_s'] / session['throughput_per_s']:.2f}× the session")


def targets(results: dict) -> list[dict]:
    """The targets, server capacity judged by perf_analyzer against an in-process session of the served file in the
    same run, beside the earlier ones (the naive pipeline, INT8 against FP32) that still hold."""
    rows = []
    polluted = results["run"].get("smoke") or results["machine"].get("contended")
    note = "polluted: measured beside other work" if results["machine"].get("contended") else ""
    if results["run"].get("smoke"):
        note = "smoke run (the tiny model standing in for BERT-base, a few requests): not a measurement"
    elif results["run"].get("mode") == "quick":
        note = "quick run (few requests)" + (", polluted" if results["machine"].get("contended") else "")
    bert = results["sizes"].get("bert-base")
    if bert:
        sdk, sdk_fp32 = bert["triton_sdk"]["ner"], bert["triton_sdk"]["ner_fp32"]
        best_sdk, best_fp32 = best_point(sdk), best_point(sdk_fp32)
        ort, ort_fp32, naive = bert["baselines"]["ort_int8"], bert["baselines"]["ort_fp32"], bert["baselines"]["naive"]
        ratio, measured = _capacity(bert, "ner", ort)
        turns = bert.get("throughput_ratio")
        if turns:  # the SDK and the session in turns over the same texts
            measured += (f"; client SDK and session in {len(turns['rounds'])} alternating rounds: median "
                         f"{turns['median_ratio']:.2f} (" + ", ".join(f"{x['ratio']:.2f}" for x in turns["rounds"]) + ")")
        rows.append(_at_least("Triton INT8 ensemble at its best concurrency ≥ 2.0 × one in-process ORT INT8 session, "
                              "batch 1", "bert-base", measured, ratio, 2.0,
                              "; ".join(x for x in (_ceiling_note(bert, "int8", ort), _work_note(bert, ort), note)
                                        if x)))
        share = bert.get("gemm_ceiling", {}).get("share", {}).get("int8")
        if share is not None:
            rows.append(_at_least("Triton INT8 ensemble ≥ 50 % of the GEMM-bound ceiling (client SDK best)",
                                  "bert-base", f"{100 * share:.1f} %", share / 0.5, 1.0, note))
        c1 = point_at(server_points(bert, "ner")[0], 1) or point_at(sdk, 1)
        rows.append(_at_most("Triton INT8 p50 at concurrency 1 ≤ 1.2 × the session's p50", "bert-base",
                             f"{c1['p50_ms']} ms vs {ort['p50_ms']} ms", c1["p50_ms"] / ort["p50_ms"], 1.2, note))
        c1_sdk = point_at(sdk, 1)
        measured = (f"{c1_sdk['p99_ms']} ms vs {c1_sdk['p50_ms']} ms; the session's own: {ort['p99_ms']} vs "
                    f"{ort['p50_ms']} ms ({ort['p99_ms'] / ort['p50_ms']:.2f}×, the texts' lengths)")
        tail = bert.get("one_text_tail")
        if tail:
            measured += (f"; one text of {tail['text_chars']} characters sent {tail['requests']} times: "
                         f"{tail['triton']['p99_over_p50']:.2f}× (session {tail['session']['p99_over_p50']:.2f}×, "
                         f"Triton's slowest {tail['triton']['max_ms']} ms)")
        rows.append(_at_most("Triton INT8 p99 at concurrency 1 ≤ 3 × its p50 (client SDK)", "bert-base", measured,
                             c1_sdk["p99_ms"] / c1_sdk["p50_ms"], 3.0, note))
        ratio, measured = _capacity(bert, "ner_fp32", ort_fp32)
        rows.append(_at_least("Triton FP32 ensemble at its best concurrency ≥ 1.5 × one in-process ORT FP32 session, "
                              "batch 1", "bert-base", measured, ratio, 1.5,
                              "; ".join(x for x in (_ceiling_note(bert, "fp32", ort_fp32), note) if x)))
        rows.append(_at_least("Triton INT8 ensemble ≥ 3.5 × the naive PyTorch pipeline (throughput)", "bert-base",
                              f"{best_sdk['throughput_per_s']}/s vs {naive['throughput_per_s']}/s",
                              best_sdk["throughput_per_s"] / naive["throughput_per_s"], 3.5, note))
        c1 = point_at(sdk, 1)
        rows.append(_at_most("Triton INT8 p95 latency at concurrency 1 ≤ the naive pipeline's p95", "bert-base",
                             f"{c1['p95_ms']} ms vs {naive['p95_ms']} ms", c1["p95_ms"] / naive["p95_ms"], 1.0, note))
        rows.append(_at_least("INT8 ≥ 2.2 × FP32 throughput through Triton (each at its best concurrency)", "bert-base",
                              f"{best_sdk['throughput_per_s']}/s (c={best_sdk['concurrency']}) vs "
                              f"{best_fp32['throughput_per_s']}/s (c={best_fp32['concurrency']})",
                              best_sdk["throughput_per_s"] / best_fp32["throughput_per_s"], 2.2, note))
        peak = bert["memory"]["peak_under_load"]["total_bytes"]
        rows.append(_at_most("Summed PSS of the server and its model processes, both precisions loaded, under load "
                             "≤ 0.9 GB", "bert-base", f"{mb(peak)} MB", peak / PSS_LIMIT_BYTES, 1.0,
                             "memory is not affected by CPU contention" if not results["run"].get("smoke") else note))
    default = results["sizes"].get("default")
    if default:
        ort = default["baselines"]["ort_int8"]
        ratio, measured = _capacity(default, "ner", ort)
        rows.append(_at_least("Default model: Triton INT8 ensemble at its best concurrency ≥ 1.5 × its in-process "
                              "INT8 session", "default", measured, ratio, 1.5,
                              "; ".join(x for x in (_work_note(default, ort), note) if x)))
        c1 = point_at(default["triton_sdk"]["ner"], 1)
        turns = default.get("latency_gap")
        if turns:  # both sides in turns over the same texts: the figure the target is judged by
            gap = turns["median_gap_ms"]
            measured = (f"{turns['triton_p50_ms']} ms vs {turns['session_p50_ms']} ms (+{gap:.2f} ms, median of "
                        f"{len(turns['rounds'])} alternating rounds: "
                        + ", ".join(f"+{r['gap_ms']:.2f}" for r in turns["rounds"])
                        + f"); side by side, minutes apart: {c1['p50_ms']} vs {ort['p50_ms']} ms")
        else:
            gap = c1["p50_ms"] - ort["p50_ms"]
            measured = f"{c1['p50_ms']} ms vs {ort['p50_ms']} ms (+{gap:.2f} ms)"
        over = "" if gap <= 1.5 else f"missed by {gap - 1.5:.2f} ms"
        rows.append(_row("Default model: INT8 ensemble p50 at concurrency 1 ≤ in-process INT8 session p50 + 1.5 ms",
                         "default", measured, None, "gap ≤ 1.5 ms", gap <= 1.5,
                         "; ".join(x for x in (over, note) if x)))
    for row in rows:
        # CPU contention does not change memory: the PSS row is only "polluted" in a smoke run.
        memory_row = row["target"].startswith("Summed PSS")
        row["polluted"] = bool(results["run"].get("smoke")) if memory_row else bool(polluted)
    return rows


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _met(value) -> str:
    return {True: "**met**", False: "**not met**", None: "–"}[value]


def _ops(counts: dict) -> str:
    return ", ".join(f"`{op}` ×{n}" for op, n in counts.items())


def _ceiling_rows(results: dict) -> list[list]:
    """Per model and build: its weight multiply-adds per token, the ceiling, the served best and its share."""
    rows = []
    for size, r in results["sizes"].items():
        c = r.get("gemm_ceiling")
        for precision, label in (("int8", "INT8 (`ner`)"), ("fp32", "FP32 (`ner_fp32`)")) if c else ():
            macs = c["macs_per_token"][precision]
            per_token = (f"{macs / 1e6:.3g}" if precision == "fp32"
                         else f"{macs['int8'] / 1e6:.3g} INT8 + {macs['fp32'] / 1e6:.3g} FP32")
            rows.append([size, label, per_token, f"{c['mean_tokens_per_text']:.1f}",
                         f"{c['tokens_per_s'][precision]:.0f}", c["texts_per_s"][precision],
                         c["served_best_per_s"][precision], f"{c['share'][precision]:.1%}"])
    return rows


def _phases(ms_per_text: dict) -> str:
    return " / ".join(f"{ms_per_text[phase]:.2f}" for phase in PHASES)


def _work_rows(results: dict) -> list[list]:
    rows = []
    for size, r in results["sizes"].items():
        work = r.get("pipeline_work")
        if not work:
            continue
        phases = [_phases(work["ms_per_text"][str(group)]) for group in GROUPS]
        served = best_point(server_points(r, "ner")[0])["throughput_per_s"]
        rows.append([size, *phases, _phases(work["ms_per_text_after_idle"]), work["one_core_texts_per_s"],
                     work["cores"], work["ceiling_texts_per_s"], served, f"{served / work['ceiling_texts_per_s']:.1%}"])
    return rows


def _idle_ms(results: dict) -> float:
    return next(r["pipeline_work"]["ms_per_text_after_idle"]["idle_ms"] for r in results["sizes"].values()
                if r.get("pipeline_work"))


def _size_title(results: dict, size: str) -> str:
    return f"{size} — {results['sizes'][size]['model']['description']}"


def markdown(results: dict) -> str:
    run, mach = results["run"], results["machine"]
    out = ["# Chinese NER on Triton (CPU): benchmark report", ""]
    mode_note = {"smoke": " — **smoke run**: a few requests on the tiny model, to prove the suite runs; not a measurement",
                 "quick": " — **quick run**: both models but few requests; an end-to-end check, not figures to quote"}
    out.append(f"Run {run['started_utc']} UTC, {run.get('seconds', '?')} s, `{run.get('command')}`"
               f"{mode_note.get(run.get('mode'), '')}.")
    if mach.get("contended"):
        out += ["", f"> **Polluted figures.** The CPU was {mach['cpu_busy_before_start']:.0%} busy before the suite "
                f"started (load average {mach['load_average_at_start']}; {', '.join(mach['busy_processes_at_start']) or '?'})."
                " Every speed figure of this run was measured beside other work on 2 cores; memory figures are not "
                "affected."]
    out.append("")

    out += ["## Targets", ""]
    out += _table(["target", "model", "measured", "ratio", "threshold", "result", "note"],
                  [[t["target"] + (" *(polluted)*" if t.get("polluted") else ""), t["size"], t["measured"], t["ratio"],
                    t["threshold"], _met(t["met"]), t.get("note") or ""] for t in results.get("targets", [])])
    out += ["", "Where a target is missed, *Where the time goes* shows Triton's per-model statistics for the same run."]
    ceiling = results["gemm_ceiling"]["ceiling"]
    out += ["", "Served throughput as a share of the GEMM-bound ceiling: the texts per second a model's weight GEMMs "
            f"alone would take at this machine's INT8 and FP32 rates (M = {ceiling['tokens']} tokens, "
            f"{ceiling['threads']} threads; *Machine ceiling*), over the texts the SDK sent; served: the ensemble at "
            "its best concurrency through the SDK.", ""]
    out += _table(["model", "build", "multiply-adds per token (millions)", "tokens per text", "ceiling tokens/s",
                   "ceiling texts/s", "served best /s", "share of ceiling"], _ceiling_rows(results))
    work_rows = _work_rows(results)
    if work_rows:
        out += ["", "## Pipeline work", "",
                "The served pipeline's own work, in process on one core (perf/pipeline_work.py): the repository's "
                "tokenizer, its encoder model's session at one thread with the served run planning, and its decoder, "
                "with no server, client or hand-over between them, texts one at a time and in groups of eight "
                "requests; ms per text, tokenizer / encoder / decoder. Its ceiling, the cores times the faster "
                "grouping's rate, bounds what any server can serve of this work on this machine; served: `ner` at "
                "its best concurrency (perf_analyzer where it ran). *After idling*: one at a time again, each text "
                f"after a pause of {_idle_ms(results):g} ms, as a server's processes idle between their turns at "
                "concurrency 1: what the same work costs on a core that idled.", ""]
        out += _table(["model", "one at a time", "groups of 8", "after idling", "one core /s", "cores",
                       "ceiling /s", "served best /s", "share of ceiling"], work_rows)
    out.append("")

    out += ["## Machine and versions", ""]
    cpu = mach["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on)
    out += [f"- CPU: {cpu['model']}, {cpu['logical_cores']} logical cores ({cpu['usable_cores']} usable), "
            f"VNNI: {'yes' if cpu['vnni'] else 'no'}; flags: {flags}",
            f"- Memory: {mach['memory_bytes'] / 2**30:.1f} GiB; kernel {mach['kernel']}",
            f"- Load average at start {mach['load_average_at_start']}, at end {run.get('load_average_at_end')}; "
            f"CPU busy before start {mach['cpu_busy_before_start']:.0%}",
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items() if v),
            f"- Code: {results['git'].get('commit', '?')[:12]} ({results['git'].get('dirty_files', 0)} files changed "
            "since)", ""]

    gemm = results["gemm_ceiling"]
    tokens = sorted({p["tokens"] for p in gemm["points"]})
    shapes = [f"{k}→{n}" for k, n in gemm["layer_gemms"]]
    shapes = [f"{shapes.count(s)} × {s}" if shapes.count(s) > 1 else s for s in dict.fromkeys(shapes)]
    out += ["## Machine ceiling", "",
            f"ONNX Runtime {results['versions'].get('onnxruntime')} on this CPU (VNNI: "
            f"{'yes' if cpu['vnni'] else 'no'}, AMX INT8: {'yes' if cpu['flags'].get('amx_int8') else 'no'}), measured before anything else: one "
            "BERT-base layer's weight GEMMs (" + ", ".join(shapes) + ") over M "
            f"tokens, {gemm['seconds_per_point']} s per point after a warm-up run, in G multiply-adds per second. "
            "INT8: uint8 activations × per-channel int8 weights in the export's static QDQ form, which ONNX Runtime "
            f"runs as {_ops(gemm['ran_as']['int8'])}; FP32 as {_ops(gemm['ran_as']['fp32'])}. The ceiling: "
            f"M = {ceiling['tokens']}, {ceiling['threads']} threads.", ""]
    rows = []
    for precision in ("int8", "fp32"):
        for threads in sorted({p["threads"] for p in gemm["points"]}):
            by_tokens = {p["tokens"]: p for p in gemm["points"]
                         if (p["precision"], p["threads"]) == (precision, threads)}
            rows.append([precision.upper(), threads] + [f"{by_tokens[m]['macs_per_s'] / 1e9:.1f}" for m in tokens]
                        + [f"{by_tokens[ceiling['tokens']]['tops']:.3f}"])
    out += _table(["precision", "threads"] + [f"M = {m}" for m in tokens] + [f"TOPS at M = {ceiling['tokens']}"],
                  rows)
    out.append("")

    sizes = list(results["sizes"])
    out += ["## Side by side", "",
            "Same texts (MSRA test sentences), same machine, one run. Throughput in texts per second; latency per text "
            "in ms. *naive*: Hugging Face pipeline on PyTorch FP32 (or the model's own PyTorch module with the "
            "project's decoding), batch 1, 2 threads. *ORT session*: one in-process ONNX Runtime session, batch 1, "
            "2 threads, tokenisation excluded. *Triton*: the ensembles through the client SDK over gRPC, each "
            "concurrency level a separate closed-loop run; its throughput counts the answers while that many requests "
            "were in flight (from the c-th answer to the last request sent; the drain after it, at falling "
            "concurrency, is left out, as perf_analyzer's windows leave it out; `throughput_whole_run_per_s` in the "
            "JSON keeps the whole run).", ""]
    for size in sizes:
        r = results["sizes"][size]
        t = r["texts"]
        out += [f"### {_size_title(results, size)}", "",
                f"{t['count']} texts, mean {t['mean_chars']} characters (median {t['median_chars']}, max "
                f"{t['max_chars']}); client: {'ner_client SDK' if r['client']['sdk'] else 'raw tritonclient (' + r['client']['note'] + ')'}.", ""]
        rows = []
        b = r["baselines"]
        for key, label in [("naive", "naive PyTorch FP32")] + [(f"ort_{k}", f"ORT session {l}") for k, l, _ in BUILDS]:
            if key in b:
                rows.append([label, "1", b[key]["throughput_per_s"], b[key].get("p50_ms"), b[key].get("p95_ms"),
                             b[key].get("p99_ms")])
        for model, label in (("ner", "Triton INT8 static (`ner`)"), ("ner_fp32", "Triton FP32 (`ner_fp32`)")):
            for p in r["triton_sdk"][model]:
                rows.append([label, p["concurrency"], p["throughput_per_s"], p.get("p50_ms"), p.get("p95_ms"),
                             p.get("p99_ms")])
        out += _table(["what", "concurrency", "throughput/s", "p50 ms", "p95 ms", "p99 ms"], rows)
        if "ort_int8_grouped_batch8" in b:
            g, p8 = b["ort_int8_grouped_batch8"], b["ort_int8_padded_batch8"]
            out += ["", f"For reference, the same INT8 session over rows sorted by length, up to 8 per run: "
                    f"{g['throughput_per_s']} rows/s with runs cut as the served encoder cuts them "
                    f"({g.get('rule', 'padding <= 25%')}: ms per call, per position, per token), "
                    f"{p8['throughput_per_s']} rows/s when each run of 8 is padded to its longest row, against "
                    f"{b['ort_int8']['throughput_per_s']} at batch 1."]
        tail = r.get("one_text_tail")
        if tail:
            out += ["", f"One text of median length ({tail['text_chars']} characters) sent {tail['requests']} times, "
                    "one request at a time, the session and `ner` in turns: with every request the same, a tail is "
                    "the serving path's own, not the texts' lengths.", ""]
            out += _table(["what", "p50 ms", "p99 ms", "p99 / p50", "slowest ms"],
                          [[label, x["p50_ms"], x["p99_ms"], x["p99_over_p50"], x["max_ms"]]
                           for label, x in (("ORT session INT8", tail["session"]), ("Triton `ner`", tail["triton"]))])
        out.append("")

    out += ["## Triton through the client SDK", "",
            "Every concurrency point, with what the encoder's dynamic batcher achieved (requests per execution, from "
            "Triton's statistics) and failed requests.", ""]
    for size in sizes:
        r = results["sizes"][size]
        rows = []
        for model in ("ner", "ner_fp32"):
            precision = "int8" if model == "ner" else "fp32"
            for p in r["triton_sdk"][model]:
                rows.append([model, p["concurrency"], p["requests"], p["throughput_per_s"], p.get("p50_ms"),
                             p.get("p90_ms"), p.get("p95_ms"), p.get("p99_ms"),
                             encoder_stats(p.get("server_stats", {}), precision).get("requests_per_execution"),
                             p["errors"]])
        out += [f"### {_size_title(results, size)}", ""]
        out += _table(["model", "concurrency", "requests", "throughput/s", "p50", "p90", "p95", "p99",
                       "encoder req/exec", "errors"], rows)
        out.append("")

    out += ["## gRPC and HTTP", "", "The INT8 ensemble through the SDK over each protocol (same texts and counts).", ""]
    rows = []
    for size in sizes:
        r = results["sizes"][size]
        for p in r["triton_sdk_http"]["ner"]:
            g = point_at(r["triton_sdk"]["ner"], p["concurrency"])
            rows.append([size, p["concurrency"], g.get("throughput_per_s"), p["throughput_per_s"], g.get("p50_ms"),
                         p.get("p50_ms"), g.get("p95_ms"), p.get("p95_ms")])
    out += _table(["model", "concurrency", "gRPC /s", "HTTP /s", "gRPC p50 ms", "HTTP p50 ms", "gRPC p95 ms",
                   "HTTP p95 ms"], rows)
    out.append("")
    out += ["perf_analyzer below compares the protocols too, with Triton's own C++ client.", ""]

    out += ["## Where the time goes", "",
            "Triton's per-model statistics over the INT8 ensemble's concurrency-1 run and its best run: mean ms per "
            "request in each stage (queue, compute input, compute, compute output), and requests per execution.", ""]
    for size in sizes:
        r = results["sizes"][size]
        ner = r["triton_sdk"]["ner"]
        for label, point in (("concurrency 1", point_at(ner, 1)), (f"best (c={best_point(ner).get('concurrency')})",
                                                                    best_point(ner))):
            stats = point.get("server_stats", {})
            rows = [[name, s["requests"], s["requests_per_execution"], s["queue_ms"], s["compute_input_ms"],
                     s["compute_infer_ms"], s["compute_output_ms"], s["success_ms"]]
                    for name, s in stats.items()
                    if name in ("ner", "tokenizer", "encoder_int8", "decoder", "text_encoder_int8")]
            out += [f"**{size}, {label}** (client-side p50 {point.get('p50_ms')} ms)", ""]
            out += _table(["model", "requests", "req/exec", "queue", "compute input", "compute", "compute output",
                           "total"], rows)
            out.append("")
        c1 = point_at(ner, 1)
        ort = r["baselines"]["ort_int8"]
        stats = c1.get("server_stats", {})
        step = next(((name, what, phases) for name, what, phases in (
            ("text_encoder_int8", "the text encoder (tokenizer and encoder in one process) computes for",
             ("tokenizer", "encoder")),
            ("encoder_int8", "the encoder's compute is", ("encoder",))) if name in stats), None)
        if step:
            name, what, phases = step
            work = r.get("pipeline_work")
            in_process = "" if not work else (
                "; the same work in process takes {:.2f} ms per text one after another and {:.2f} ms after idling "
                "(*Pipeline work*)".format(*(sum(figures[phase] for phase in phases) for figures in (
                    work["ms_per_text"]["1"], work["ms_per_text_after_idle"]))))
            out += [f"At concurrency 1 the client sees {c1.get('p50_ms')} ms (p50) where the in-process session needs "
                    f"{ort.get('p50_ms')} ms; inside Triton {what} {stats[name].get('compute_infer_ms')} ms "
                    f"per request (mean){in_process}.", ""]

    out += ["## perf_analyzer", ""]
    for size in sizes:
        pa = results["sizes"][size]["perf_analyzer"]
        out += [f"### {_size_title(results, size)}", ""]
        if not pa["available"]:
            out += [f"Not run: {pa['note']}", ""]
            continue
        out += [f"{pa['note']}; real MSRA text via `--input-data` (the encoder alone gets the rows the tokenizer "
                "would give it); `--measurement-mode count_windows`, 3 windows averaged (the note gives their spread). "
                "Latencies in ms; server-side columns are means per request.", ""]
        rows = [[p["model"], p["protocol"], p["concurrency"], p.get("throughput_per_s"), p.get("p50_ms"),
                 p.get("p95_ms"), p.get("p99_ms"), p.get("server_queue_ms"), p.get("server_compute_infer_ms"),
                 p.get("error") or ("unstable: windows' mean, median window p95; " if p.get("unstable") else "")
                 + (f"windows ±{p['window_spread'] / 2:.0%}" if p.get("window_spread") is not None else "")]
                for p in pa["runs"]]
        out += _table(["model", "protocol", "concurrency", "infer/s", "p50", "p95", "p99", "server queue",
                       "server compute", "note"], rows)
        out.append("")

    out += ["## locust", "", "Headless, loopback only, each user class alone, bounded by time and request count.", ""]
    rows = []
    for size in sizes:
        for user, l in results["sizes"][size]["locust"].items():
            if l.get("error"):
                rows.append([size, user, "–", "–", "–", "–", "–", "–", l["error"]])
            else:
                rows.append([size, user, l["users"], l["requests"], l["failures"], l["throughput_per_s"], l["p50_ms"],
                             l["p95_ms"], f"≤ {l['run_time_limit_s']} s / ≤ {l['max_requests']} requests"])
    out += _table(["model", "user", "users", "requests", "failures", "req/s", "p50 ms", "p95 ms", "bounds / note"], rows)
    out.append("")

    out += ["## Memory", "",
            "Sum of PSS (`/proc/<pid>/smaps_rollup`) over tritonserver and every model process below it; both "
            "precisions loaded. Peak under load: the largest sample (every 0.5 s) during the SDK, perf_analyzer and "
            "locust runs.", ""]
    rows = []
    for size in sizes:
        m = results["sizes"][size]["memory"]
        for label, key in (("idle after start", "idle_after_start"), ("peak under load", "peak_under_load"),
                           ("idle after load", "idle_after_load")):
            sample = m.get(key)
            if sample:
                parts = ", ".join(f"{k} {mb(v)}" for k, v in sorted(sample["processes"].items(), key=lambda kv: -kv[1]))
                rows.append([size, label, mb(sample["total_bytes"]), parts])
    out += _table(["model", "when", "total MB", "per process (MB)"], rows)
    out.append("")

    out += ["## INT8 builds", "",
            "`ner` serves static INT8: its activation scales were calibrated at export on training text and are "
            "stored in the graph, so a row's scores do not depend on the rows it shares a call with. Dynamic INT8 "
            "(`python -m export --quantization dynamic`, what `ner` served before) computes each activation scale per "
            "call over every row of the call, so a text's scores move with what Triton batched it with. reduce_range: "
            "static with 7-bit weights (`--reduce-range`), for CPUs without VNNI. Each is quantized from the same FP32 "
            "file by the exporter's quantizer, the static ones calibrated alike. *In process*: one session, batch 1, "
            "as in Side by side. *Triton*: the tuning sweep's server serving that build as `encoder_int8` (static: "
            "its `chosen` row; – where the sweep did not run it). *Labels as FP32*: share of scored positions where "
            "the decoder's label equals FP32's, over the side-by-side texts. *Batch dependence*: the largest change "
            "of a logit when a row runs in one call with other rows instead of alone.", ""]
    rows = []
    for size in sizes:
        r = results["sizes"][size]
        agreement = r.get("int8_label_agreement", {})
        dependence = r.get("batch_dependence", {})
        changes = dependence.get("max_abs_logit_change", {})
        for key, label, build in BUILDS:
            b = r["baselines"].get(f"ort_{key}", {})
            served = next((t for t in r.get("tuning", []) if build and t.get("int8") == build
                           and (build != "static" or t["variant"] == "chosen")), {})
            rows.append([size, label, b.get("throughput_per_s"), b.get("p50_ms"), served.get("c8_throughput_per_s"),
                         served.get("c1_p50_ms"), f"{agreement[key]:.2%}" if key in agreement else "–",
                         f"{changes[key]:.1e}" if key in changes else "–"])
    rows_in_batch = {results["sizes"][size].get("batch_dependence", {}).get("rows") for size in sizes} - {None}
    out += _table(["model", "build", "in process /s", "in process p50 ms", "Triton c=8 /s", "Triton c=1 p50 ms",
                   "labels as FP32", "batch dependence (max logit change, "
                   f"{'/'.join(map(str, sorted(rows_in_batch))) or '?'} rows)"], rows)
    acc = results["sizes"].get("default", {}).get("accuracy")
    if acc:
        names = {key: label for key, label, _ in BUILDS}
        out += ["", f"Accuracy on the default model, {acc['sentences']} MSRA test sentences, entity-level exact match "
                "(decoded by the served decoder's code):", ""]
        out += _table(["build", "precision", "recall", "F1", "same entities as FP32"],
                      [[names.get(k, k), v["precision"], v["recall"], v["f1"], v.get("same_entities_as_fp32")]
                       for k, v in acc["scores"].items()])
    out.append("")

    fused_sizes = [size for size in sizes if results["sizes"][size].get("fusion")]
    if fused_sizes:
        out += ["## Fused graphs", "",
                "The exporter runs ONNX Runtime's transformer fusions on BERT-family encoders before quantization "
                "(export/optimize.py; `--no-fuse` turns them off). Both exports of the same checkpoint, in process, one "
                "session of 2 threads per file, the same texts: batch 1 (each text alone) and batch 8 (eight texts "
                "per call, padded as the served tokenizer pads them), in texts per second.", ""]
        rows = []
        for size in fused_sizes:
            f = results["sizes"][size]["fusion"]
            if not f.get("fused"):
                rows.append([size, "–", "–", "–", "–", "–", "–", f.get("unfused_because", "not fused")])
                continue
            for graph, speeds in f["texts_per_s"].items():
                rows.append([size, graph.upper(), speeds["unfused"]["batch_1"], speeds["fused"]["batch_1"],
                             speeds["unfused"]["batch_8"], speeds["fused"]["batch_8"],
                             f"{f['speedup'][graph]['batch_1']:.2f} / {f['speedup'][graph]['batch_8']:.2f}",
                             _ops(f["fusion"].get("fused_operators", {}))])
        out += _table(["model", "graph", "unfused b=1 /s", "fused b=1 /s", "unfused b=8 /s", "fused b=8 /s",
                       "fused ÷ unfused (b=1 / b=8)", "fused operators"], rows)
        out.append("")

    out += ["## Tuning", "",
            "Each variant of the served configuration on its own server (INT8 ensemble only), same texts: latency at "
            "concurrency 1 and throughput at concurrency 8. The first row is what ships (`RepositoryConfig` defaults "
            "in export/repository.py).", ""]
    chosen = results["sizes"][sizes[0]]["repository"] if sizes else {}
    keys = ("encoder_instances", "intra_op_threads", "concurrent_runs", "fp32_encoder_instances",
            "fp32_intra_op_threads", "ort_allow_spinning", "tokenizer_instances", "decoder_instances",
            "max_queue_delay_us", "max_tokens_per_run", "run_planning", "run_cost", "enable_cpu_mem_arena",
            "trim_after_tokens")
    out += ["Chosen: " + ", ".join(f"`{k}={chosen.get(k)}`" for k in keys) + "; encoder inputs `allow_ragged_batch`, "
            "rows regrouped by real length inside the encoder; Triton response cache off for the benchmark (inputs "
            "repeat), on in the shipped repository.", ""]
    layouts = [f"{size} {precision.upper()} {lay['instances']} × {lay['intra_op_threads']} × {lay['concurrent_runs']}"
               for size in sizes for precision, lay in results["sizes"][size].get("encoder_layouts", {}).items()]
    if layouts:
        out += ["Encoder layouts (`None`: chosen from the graph, `RepositoryConfig.encoder_layout`: one instance × 2 "
                "threads × 2 concurrent runs for a GEMM-bound graph, else 2 × 1 × 1), instances × threads × concurrent "
                "runs: " + ", ".join(layouts) + ". A single-instance model has no queue bound (Triton 2.51's 500 ms "
                "batcher stall with a `default_queue_policy`; docs/benchmarks.md).", ""]
    for size in sizes:
        rows = [[t["variant"], t["c1_p50_ms"], t["c1_p95_ms"], t["c8_throughput_per_s"], t["c8_p95_ms"],
                 t["c8_encoder_requests_per_execution"], mb(t["peak_pss_bytes"]), t["errors"], t["note"]]
                for t in results["sizes"][size].get("tuning", [])]
        if rows:
            out += [f"### {_size_title(results, size)}", ""]
            out += _table(["variant", "c=1 p50 ms", "c=1 p95 ms", "c=8 /s", "c=8 p95 ms", "encoder req/exec",
                           "peak PSS MB", "errors", "what"], rows)
            out.append("")

    out += ["## Plots", ""]
    plots = results.get("plots", {})
    if "error" in plots:
        out += [plots["error"], ""]
    for name, file in plots.items():
        if name != "error":
            out += [f"![{name}]({file})", ""]

    out += ["## Settings", "", "```json"]
    import json

    out += [json.dumps(results["settings"], ensure_ascii=False), "```", ""]
    return "\n".join(out)
