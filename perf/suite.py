"""The whole benchmark suite, in one process: the machine's GEMM ceiling, baselines, Triton through the client SDK,
perf_analyzer, locust, memory, the tuning sweep, then the JSON, the Markdown report and the plots (see
perf/README.md)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from export.run_cost import graph_run_cost
from serving.server import REPO_ROOT

from . import (alternating, baselines, fusion, gemm_ceiling, load, locust_run, machine, memory, models, perf_analyzer,
               pipeline_work, report, servers)
from .cli import SIZES
from .texts import describe, msra_sentences

RESULTS = REPO_ROOT / "perf" / "results"


@dataclass
class Settings:
    """Every count the suite uses; ``smoke()`` gives the seconds-long version."""

    mode: str = "full"  # "full", "quick" or "smoke"
    smoke: bool = False
    sizes: tuple = SIZES
    baseline_texts: dict = field(default_factory=lambda: {"default": 400, "bert-base": 160})
    accuracy_sentences: int = 1000
    sdk_concurrency: tuple = (1, 2, 4, 8, 16)
    sdk_requests: dict = field(default_factory=lambda: {"default": 400, "bert-base": 128})
    http_concurrency: tuple = (1, 8)
    pa_concurrency: tuple = (1, 2, 4, 8, 16)
    pa_request_count: dict = field(default_factory=lambda: {"default": 200, "bert-base": 32})
    pa_models: tuple = ("ner", "ner_fp32", "encoder_int8", "encoder_fp32")
    pa_protocols: tuple = ("grpc", "http")
    locust_users: int = 8
    locust_seconds: int = 20
    locust_max_requests: dict = field(default_factory=lambda: {"default": 4000, "bert-base": 600})
    tuning: bool = True
    tuning_requests: dict = field(default_factory=lambda: {"default": (200, 400), "bert-base": (48, 160)})
    warmup_requests: int = 16
    # Targets comparing the session with the ensemble: both in turns over the same texts (perf/alternating.py).
    alternating_rounds: int = 9
    alternating_texts: dict = field(default_factory=lambda: {"default": 80, "bert-base": 160})
    # The c=1 tail on one text repeated (alternating.one_text_tail): rounds and requests per round on each side.
    one_text_rounds: int = 2
    one_text_requests: int = 200
    # The machine's GEMM ceiling (perf/gemm_ceiling.py): token counts M and seconds per point.
    gemm_tokens: tuple = gemm_ceiling.TOKENS
    gemm_seconds: float = 0.5
    # In smoke runs the BERT-base slot is filled by the tiny model, so that every section runs in seconds.
    tiny_for_bert_base: bool = False
    default_model: Path | None = None  # None: models/default, else the tiny generated model
    command: str = "python -m perf"  # recorded in the results

    @classmethod
    def quick_settings(cls) -> "Settings":
        """Both real models, few requests (a few minutes): to check the suite end to end, not to quote."""
        return cls(mode="quick", baseline_texts={"default": 40, "bert-base": 24}, accuracy_sentences=100,
                   sdk_concurrency=(1, 4, 16), sdk_requests={"default": 40, "bert-base": 24}, http_concurrency=(1,),
                   pa_concurrency=(1, 4), pa_request_count={"default": 20, "bert-base": 8}, locust_seconds=5,
                   locust_max_requests={"default": 100, "bert-base": 30}, tuning_requests={"default": (20, 40),
                   "bert-base": (8, 16)}, warmup_requests=4, alternating_rounds=2,
                   alternating_texts={"default": 20, "bert-base": 12}, one_text_requests=40, gemm_seconds=0.2)

    @classmethod
    def smoke_settings(cls) -> "Settings":
        return cls(mode="smoke", smoke=True, baseline_texts={"default": 8, "bert-base": 8}, accuracy_sentences=8,
                   sdk_concurrency=(1, 2), sdk_requests={"default": 8, "bert-base": 8}, http_concurrency=(1,),
                   pa_concurrency=(1,), pa_request_count={"default": 10, "bert-base": 10},
                   pa_models=("ner", "encoder_int8"), locust_users=2,
                   locust_seconds=3, locust_max_requests={"default": 20, "bert-base": 20},
                   tuning_requests={"default": (6, 8), "bert-base": (6, 8)}, warmup_requests=2,
                   alternating_rounds=2, alternating_texts={"default": 8, "bert-base": 8}, one_text_requests=8,
                   gemm_tokens=(gemm_ceiling.TOKENS[0], gemm_ceiling.CEILING_TOKENS), gemm_seconds=0.05,
                   tiny_for_bert_base=True)


# The INT8 builds of models.INT8_VARIANTS, served as encoder_int8 in place of the export's static one in every size's
# sweep (name: the build, what).
INT8_TUNING = {
    "INT8 dynamic": ("dynamic", "INT8 quantized dynamically (activation scales per call: a row's scores depend on "
                     "its batch)"),
    "INT8 reduce_range": ("reduce_range", "static INT8 with reduce_range=True (7-bit weights, for CPUs without VNNI)"),
}
_INT8_ROWS = [(name, {}, note) for name, (_, note) in INT8_TUNING.items()]

# Variants of the served configuration measured against the chosen one (name, RepositoryConfig overrides, notes).
TUNING_VARIANTS = {
    "default": [
        ("chosen", {}, "the shipped defaults"),
        ("delay 1000 µs", {"max_queue_delay_us": 1000}, "dynamic-batching delay 1 ms"),
        ("tokenizer+decoder ×1", {"tokenizer_instances": 1, "decoder_instances": 1}, "one instance of each Python step"),
        ("encoder 1 × 2 × 2", {"encoder_instances": 1, "intra_op_threads": 2, "concurrent_runs": 2},
         "one encoder instance, 2 ORT threads, 2 runs side by side (the GEMM-bound layout)"),
        ("ORT spinning on", {"ort_allow_spinning": 1}, "idle ONNX Runtime threads spin (ORT's default)"),
    ] + _INT8_ROWS,
    "bert-base": [
        ("chosen", {}, "the shipped defaults"),
        ("delay 1000 µs", {"max_queue_delay_us": 1000}, "dynamic-batching delay 1 ms"),
        ("encoder 2 × 1 × 1", {"encoder_instances": 2, "intra_op_threads": 1, "concurrent_runs": 1},
         "two single-thread encoder instances, one run at a time (the recurrent layout)"),
        ("encoder 1 × 2 × 1", {"concurrent_runs": 1}, "one encoder instance, 2 ORT threads, one run at a time"),
        ("padding ≤ 25% rule", {"run_planning": "ratio"}, "runs cut where padding would pass 25% of real tokens"),
        ("exact lengths only", {"run_planning": "ratio", "max_padding_ratio": 0.0}, "runs hold rows of one real length only (no padding)"),
        ("ORT arena off", {"enable_cpu_mem_arena": 0}, "ONNX Runtime's CPU arena off (malloc, heap trimmed after large runs)"),
        ("ORT spinning on", {"ort_allow_spinning": 1}, "idle ONNX Runtime threads spin (ORT's default)"),
    ] + _INT8_ROWS,
}
SMOKE_VARIANTS = {"default": ["delay 1000 µs", "encoder 1 × 2 × 2"], "bert-base": ["INT8 dynamic", "INT8 reduce_range"]}


class Log:
    def __init__(self, path: Path):
        self.path, self.started = path, time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.started:7.1f} s] {message}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _warm(url: str, models_: list[str], texts: list[str], n: int, use_sdk: bool) -> None:
    for model in models_:
        call = load.make_caller(url, "grpc", model, use_sdk)
        for text in (texts * (n // max(len(texts), 1) + 1))[:n]:
            call(text)


def _sdk_sweep(server, model: str, protocol: str, texts: list[str], concurrencies, requests: int, use_sdk: bool,
               log) -> list[dict]:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    points = []
    for concurrency in concurrencies:
        before = servers.model_statistics(server.grpc_url)
        (point,) = load.sweep(url, protocol, model, texts, [concurrency], requests, use_sdk)
        point["server_stats"] = servers.statistics_delta(before, servers.model_statistics(server.grpc_url))
        log(f"  {model} {protocol} c={concurrency}: {point['throughput_per_s']}/s, p50 {point.get('p50_ms')} ms, "
            f"p95 {point.get('p95_ms')} ms, errors {point['errors']}")
        points.append(point)
    return points


def _model_spec(size: str, settings: Settings, log) -> models.ModelSpec:
    if size == "default":
        return models.default_model(settings.default_model, log)
    if settings.tiny_for_bert_base:
        tiny = models.tiny_model(log)
        return dataclasses.replace(tiny, key="bert-base", description=f"{tiny.description}; stands in for BERT-base "
                                   "in this smoke run")
    return models.bert_base_model(log)


def run_size(size: str, settings: Settings, out: Path, log, gemm: dict) -> dict:
    spec = _model_spec(size, settings, log)
    log(f"== {size}: {spec.description}")
    export_dir = models.exported(spec, log)
    int8_variants = {name: models.int8_variant_onnx(export_dir, name, log) for name in models.INT8_VARIANTS}
    repos = out / "repositories" / size  # laid out per run (seconds), removed at the end of the size
    bench_cfg = models.bench_repository_config()
    repo = models.serving_repository(export_dir, repos / "bench", bench_cfg)
    export_report = json.loads((export_dir / "export_report.json").read_text())
    tokenizer_json = export_dir / "tokenizer" / "1" / "tokenizer.json"
    onnx = {"fp32": export_dir / "encoder_fp32" / "1" / "model.onnx",
            "int8": export_dir / "encoder_int8" / "1" / "model.onnx",
            **{f"int8_{name}": path for name, path in int8_variants.items()}}
    n_texts = settings.baseline_texts[size]
    texts = [s.text for s in msra_sentences(max(n_texts, settings.sdk_requests[size]))]
    base_texts = texts[:n_texts]
    use_sdk, sdk_note = load.sdk_status()
    result: dict = {
        "model": {"key": spec.key, "checkpoint": str(spec.checkpoint), "description": spec.description,
                  "model_type": export_report.get("model_type"), "labels": export_report.get("labels"),
                  "crf": export_report.get("crf"), "onnx_bytes": {k: p.stat().st_size for k, p in onnx.items()},
                  "int8_label_agreement_at_export": export_report.get("int8_label_agreement")},
        "texts": describe(base_texts),
        "client": {"sdk": use_sdk, "note": sdk_note},
        "repository": dataclasses.asdict(bench_cfg),
        "encoder_layouts": {precision: dict(zip(("instances", "intra_op_threads", "concurrent_runs"),
                                                bench_cfg.encoder_layout(graph_run_cost(path), precision)))
                            for precision, path in onnx.items()},
    }

    log("baselines: naive PyTorch pipeline")
    result["baselines"] = {"naive": baselines.naive_pipeline(spec.checkpoint, tokenizer_json, base_texts)}
    log(f"  naive: {result['baselines']['naive']['throughput_per_s']}/s")
    for name, path in onnx.items():
        b = baselines.onnx_session(f"ort_{name}", path, tokenizer_json, base_texts)
        result["baselines"][f"ort_{name}"] = b
        log(f"  ORT {name} batch 1: {b['throughput_per_s']}/s, p50 {b['p50_ms']} ms")
    for key, ratio in (("ort_int8_grouped_batch8", None), ("ort_int8_padded_batch8", 100.0)):
        # What length-aware batching gains in process, with the served encoder's run planning and without it.
        result["baselines"][key] = baselines.batched_session(key, onnx["int8"], tokenizer_json, base_texts,
                                                             batch_size=8, max_padding_ratio=ratio)
    log("INT8 builds against FP32: the decoder's labels, and a row's logits alone and among 7 others")
    result["int8_label_agreement"] = baselines.int8_label_agreement(onnx, export_dir, base_texts)
    result["batch_dependence"] = baselines.batch_dependence(onnx, tokenizer_json, base_texts)
    log(f"  agreement {result['int8_label_agreement']}; max |Δlogit| "
        f"{ {k: f'{v:.1e}' for k, v in result['batch_dependence']['max_abs_logit_change'].items()} }")
    if spec.model_type == "bert":
        log("fused against unfused encoder graphs, in process (two more exports)")
        result["fusion"] = fusion.run(spec, base_texts, log=log)
    if size == "default":
        log(f"accuracy of FP32 and the INT8 builds on {settings.accuracy_sentences} MSRA test sentences")
        result["accuracy"] = baselines.int8_accuracy(onnx, export_dir, msra_sentences(settings.accuracy_sentences))
        log(f"  {json.dumps({k: v['f1'] for k, v in result['accuracy']['scores'].items()})}")

    log("the served pipeline's own work in process, one core (perf/pipeline_work.py)")
    result["pipeline_work"] = pipeline_work.measure(repo, "ner", base_texts)
    log(f"  {result['pipeline_work']['ms_per_text']} ms per text; ceiling on {result['pipeline_work']['cores']} cores "
        f"{result['pipeline_work']['ceiling_texts_per_s']}/s")

    log(f"starting tritonserver on {repo}")
    with servers.triton(repo, out / "logs") as server:
        pid = server.process.pid
        result["server"] = {"ready_seconds": server.ready_seconds}
        result["memory"] = {"idle_after_start": memory.tree_pss(pid)}
        log(f"  ready in {server.ready_seconds} s; PSS idle {memory.mb(result['memory']['idle_after_start']['total_bytes'])} MB")
        _warm(server.grpc_url, ["ner", "ner_fp32"], texts, settings.warmup_requests, use_sdk)
        if size == "default":
            log(f"c=1 latency gap, session and `ner` in turns ({settings.alternating_rounds} rounds)")
            gap = alternating.latency_gap(server.grpc_url, "ner", onnx["int8"], tokenizer_json, texts, use_sdk,
                                          settings.alternating_rounds, settings.alternating_texts[size])
            result["latency_gap"] = gap
            log(f"  median gap {gap['median_gap_ms']} ms over rounds {[r['gap_ms'] for r in gap['rounds']]}")
        text = sorted(texts, key=len)[len(texts) // 2]
        log(f"c=1 tail on one text of median length ({len(text)} characters), session and `ner` in turns")
        tail = alternating.one_text_tail(server.grpc_url, "ner", onnx["int8"], tokenizer_json, text, use_sdk,
                                         settings.one_text_rounds, settings.one_text_requests)
        result["one_text_tail"] = tail
        log(f"  p99/p50: Triton {tail['triton']['p99_over_p50']}, session {tail['session']['p99_over_p50']}")

        with memory.PeakSampler(pid) as peak:
            log("Triton ensembles through the client SDK (gRPC)")
            result["triton_sdk"] = {
                model: _sdk_sweep(server, model, "grpc", texts, settings.sdk_concurrency, settings.sdk_requests[size],
                                  use_sdk, log)
                for model in ("ner", "ner_fp32")}
            log("same over HTTP")
            result["triton_sdk_http"] = {"ner": _sdk_sweep(server, "ner", "http", texts, settings.http_concurrency,
                                                           settings.sdk_requests[size], use_sdk, log)}
        result["memory"]["peak_sdk_load"] = peak.peak
        if size == "bert-base":
            # Outside the PSS sampler: reading smaps of a 1 GB process tree every 0.5 s takes a core in bursts, which
            # a 2-thread session (every operator waits for its slower thread) pays far more than the server's two
            # single-thread instances, which would skew the ratio.
            best = report.best_point(result["triton_sdk"]["ner"])["concurrency"]
            log(f"throughput ratio, session and `ner` at c={best} in turns ({settings.alternating_rounds} rounds)")
            ratio = alternating.throughput_ratio(server.grpc_url, "ner", best, onnx["int8"], tokenizer_json, texts,
                                                 use_sdk, settings.alternating_rounds,
                                                 settings.alternating_texts[size])
            result["throughput_ratio"] = ratio
            log(f"  median ratio {ratio['median_ratio']} over rounds {[r['ratio'] for r in ratio['rounds']]}")

        pa_ok, pa_note = perf_analyzer.status()
        result["perf_analyzer"] = {"available": pa_ok, "note": pa_note, "runs": []}
        if pa_ok:
            log(f"perf_analyzer ({pa_note})")
            data_dir = out / "perf_analyzer" / size
            data_dir.mkdir(parents=True, exist_ok=True)
            pa_texts = texts[: max(settings.sdk_requests[size], 8)]
            inputs = {"ensemble": perf_analyzer.ensemble_input_data(pa_texts, data_dir / "texts.json"),
                      "encoder": perf_analyzer.encoder_input_data(tokenizer_json, pa_texts, data_dir / "rows.json")}
            with memory.PeakSampler(pid) as peak:
                for model in settings.pa_models:
                    for protocol in settings.pa_protocols:
                        url = server.grpc_url if protocol == "grpc" else server.http_url
                        data = inputs["encoder" if model.startswith("encoder") else "ensemble"]
                        for run in perf_analyzer.sweep(model, url, protocol, data, list(settings.pa_concurrency),
                                                       settings.pa_request_count[size], data_dir):
                            result["perf_analyzer"]["runs"].append(run)
                            log(f"  {model} {protocol} c={run['concurrency']}: {run.get('throughput_per_s')}/s, "
                                f"p95 {run.get('p95_ms')} ms {run.get('error', '')}")
            result["memory"]["peak_perf_analyzer"] = peak.peak
        else:
            log(f"perf_analyzer skipped: {pa_note}")

        log("locust (headless, loopback)")
        texts_file = out / "locust" / f"texts-{size}.json"
        texts_file.parent.mkdir(parents=True, exist_ok=True)
        texts_file.write_text(json.dumps(texts, ensure_ascii=False))
        result["locust"] = {}
        with memory.PeakSampler(pid) as peak:
            result["locust"]["TritonHttpUser"] = locust_run.run(
                "TritonHttpUser", f"http://{server.http_url}", texts_file, out / "locust" / size, settings.locust_users,
                settings.locust_seconds, settings.locust_max_requests[size])
            with locust_run.webui_gateway(server.grpc_url, out / "logs" / f"webui-{size}.log") as (ws_url, reason):
                if ws_url is None:
                    result["locust"]["WebSocketUser"] = {"user_class": "WebSocketUser", "error": reason}
                else:
                    result["locust"]["WebSocketUser"] = locust_run.run(
                        "WebSocketUser", f"http://{server.http_url}", texts_file, out / "locust" / size,
                        settings.locust_users, settings.locust_seconds, settings.locust_max_requests[size],
                        ws_url=ws_url)
        result["memory"]["peak_locust"] = peak.peak
        for user, r in result["locust"].items():
            log(f"  {user}: {r.get('throughput_per_s', r.get('error'))}")
        result["memory"]["idle_after_load"] = memory.tree_pss(pid)
    peaks = [result["memory"][k] for k in ("peak_sdk_load", "peak_perf_analyzer", "peak_locust") if k in result["memory"]]
    result["memory"]["peak_under_load"] = max(peaks, key=lambda p: p["total_bytes"])
    log(f"  PSS peak under load {memory.mb(result['memory']['peak_under_load']['total_bytes'])} MB, idle after load "
        f"{memory.mb(result['memory']['idle_after_load']['total_bytes'])} MB")
    served = {"int8": report.best_point(result["triton_sdk"]["ner"])["throughput_per_s"],
              "fp32": report.best_point(result["triton_sdk"]["ner_fp32"])["throughput_per_s"]}
    result["gemm_ceiling"] = gemm_ceiling.ceiling(
        gemm, gemm_ceiling.model_macs_per_token(onnx["fp32"], onnx["int8"]),
        gemm_ceiling.tokens_per_text(tokenizer_json, texts[: settings.sdk_requests[size]]), served)
    log(f"  GEMM-bound ceiling {result['gemm_ceiling']['texts_per_s']} texts/s; served best {served}: shares "
        f"{result['gemm_ceiling']['share']}")

    if settings.tuning:
        result["tuning"] = run_tuning(size, settings, export_dir, int8_variants, texts, out, repos, use_sdk, log)
    shutil.rmtree(repos, ignore_errors=True)
    if repos.parent.exists() and not any(repos.parent.iterdir()):
        repos.parent.rmdir()
    return result


def run_tuning(size: str, settings: Settings, export_dir: Path, int8_variants: dict[str, Path], texts: list[str],
               out: Path, repos: Path, use_sdk: bool, log) -> list[dict]:
    """Each variant on its own server holding only the INT8 ensemble: c=1 latency and c=8 throughput."""
    n1, n8 = settings.tuning_requests[size]
    chosen = [v for v in TUNING_VARIANTS[size] if not settings.smoke or v[0] in SMOKE_VARIANTS[size]]
    rows = []
    log(f"tuning sweep ({len(chosen)} variants, INT8 ensemble only)")
    for name, overrides, note in chosen:
        cfg = models.bench_repository_config(**overrides)
        int8 = INT8_TUNING[name][0] if name in INT8_TUNING else "static"
        slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in name.lower())  # the stub wants ASCII paths
        repo = models.serving_repository(export_dir, repos / f"variant-{slug}", cfg,
                                          int8_onnx=int8_variants.get(int8), keep=("ner",))
        with servers.triton(repo, out / "logs") as server:
            _warm(server.grpc_url, ["ner"], texts, settings.warmup_requests, use_sdk)
            with memory.PeakSampler(server.process.pid) as peak:
                c1 = _sdk_sweep(server, "ner", "grpc", texts, [1], n1, use_sdk, lambda m: None)[0]
                c8 = _sdk_sweep(server, "ner", "grpc", texts, [8], n8, use_sdk, lambda m: None)[0]
        encoder = servers.encoder_stats(c8["server_stats"], "int8")
        row = {"variant": name, "note": note, "overrides": overrides, "int8": int8, "c1_p50_ms": c1.get("p50_ms"),
               "c1_p95_ms": c1.get("p95_ms"), "c8_throughput_per_s": c8["throughput_per_s"], "c8_p95_ms": c8.get("p95_ms"),
               "c8_encoder_requests_per_execution": encoder.get("requests_per_execution"),
               "peak_pss_bytes": peak.peak["total_bytes"], "errors": c1["errors"] + c8["errors"]}
        rows.append(row)
        log(f"  {name}: c1 p50 {row['c1_p50_ms']} ms, c8 {row['c8_throughput_per_s']}/s, "
            f"{row['c8_encoder_requests_per_execution']} req/exec, PSS {memory.mb(row['peak_pss_bytes'])} MB")
        shutil.rmtree(repo, ignore_errors=True)
    return rows


def run(settings: Settings, output: Path | None = None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = output or RESULTS / f"{stamp}{'' if settings.mode == 'full' else '-' + settings.mode}"
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "suite.log")
    started = time.perf_counter()
    log(f"results go to {out}")
    results = {
        "run": {"started_utc": stamp, "smoke": settings.smoke, "mode": settings.mode, "command": settings.command},
        "machine": machine.describe_machine(),
        "versions": machine.versions(),
        "git": machine.git_revision(),
        "settings": dataclasses.asdict(settings),
        "sizes": {},
    }
    results["versions"]["perf_analyzer"] = perf_analyzer.status()[1]
    if results["machine"]["contended"]:
        log(f"WARNING: the machine was {results['machine']['cpu_busy_before_start']:.0%} busy before the suite "
            f"started ({', '.join(results['machine']['busy_processes_at_start']) or 'unknown processes'}): every "
            "speed figure of this run is polluted")
    log(f"GEMM ceiling: ONNX Runtime INT8 and FP32 on BERT-base layer shapes, M = {settings.gemm_tokens}")
    results["gemm_ceiling"] = gemm_ceiling.measure(settings.gemm_tokens, seconds=settings.gemm_seconds, log=log)
    for size in settings.sizes:
        results["sizes"][size] = run_size(size, settings, out, log, results["gemm_ceiling"])
        _write(out, results)
    results["run"]["seconds"] = round(time.perf_counter() - started, 1)
    results["run"]["load_average_at_end"] = machine.load_average()
    results["targets"] = report.targets(results)
    _write(out, results)
    (out / "report.md").write_text(report.markdown(results), encoding="utf-8")
    try:
        from . import plots

        results["plots"] = plots.render(results, out)
    except ImportError as err:  # matplotlib missing: the report says so
        results["plots"] = {"error": f"matplotlib not installed ({err}): bash perf/setup_tools.sh"}
    _write(out, results)
    (out / "report.md").write_text(report.markdown(results), encoding="utf-8")
    latest = RESULTS / "latest"
    if out.parent == RESULTS:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(out.name)
    log(f"done in {results['run']['seconds']} s: {out / 'report.md'}")
    return out


def _write(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
