"""PNG plots of one run: throughput against concurrency, latency percentiles against concurrency, FP32 against
INT8 (and the baselines)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

PLOTS = ("throughput_vs_concurrency", "latency_percentiles", "fp32_vs_int8")


def _title(results: dict, text: str) -> str:
    flags = []
    if results["run"].get("smoke"):
        flags.append("smoke run")
    if results["machine"].get("contended"):
        flags.append("POLLUTED: measured beside other work")
    return text + (f"\n({'; '.join(flags)})" if flags else "")


def render(results: dict, out: Path) -> dict:
    sizes = list(results["sizes"])
    files = {}

    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        r = results["sizes"][size]
        for model, label in (("ner", "Triton INT8 (SDK, gRPC)"), ("ner_fp32", "Triton FP32 (SDK, gRPC)")):
            points = r["triton_sdk"][model]
            ax.plot([p["concurrency"] for p in points], [p["throughput_per_s"] for p in points], "o-", label=label)
        pa = [p for p in r["perf_analyzer"].get("runs", []) if p["model"] == "ner" and p["protocol"] == "grpc"
              and p.get("throughput_per_s")]
        if pa:
            ax.plot([p["concurrency"] for p in pa], [p["throughput_per_s"] for p in pa], "s--",
                    label="Triton INT8 (perf_analyzer, gRPC)")
        for key, label, style in (("ort_int8", "ORT session INT8, batch 1", ":"),
                                  ("ort_fp32", "ORT session FP32, batch 1", "-."),
                                  ("naive", "naive PyTorch pipeline", "--")):
            ax.axhline(r["baselines"][key]["throughput_per_s"], linestyle=style, color="grey", linewidth=1)
            ax.annotate(label, (1, r["baselines"][key]["throughput_per_s"]), fontsize=7, color="dimgrey",
                        xytext=(2, 2), textcoords="offset points")
        _concurrency_axis(ax, [p["concurrency"] for p in r["triton_sdk"]["ner"]])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel("texts per second")
        ax.set_title(size)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(_title(results, "Throughput against concurrency"))
    fig.tight_layout()
    files["throughput_vs_concurrency"] = _save(fig, out, "throughput_vs_concurrency.png")

    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        points = results["sizes"][size]["triton_sdk"]["ner"]
        x = [p["concurrency"] for p in points]
        for key, style in (("p50_ms", "o-"), ("p90_ms", "^-"), ("p95_ms", "s-"), ("p99_ms", "v-")):
            ax.plot(x, [p.get(key) for p in points], style, label=f"Triton INT8 {key[:-3]}")
        naive = results["sizes"][size]["baselines"]["naive"]
        ax.axhline(naive["p95_ms"], linestyle="--", color="grey", linewidth=1)
        ax.annotate("naive pipeline p95", (x[0], naive["p95_ms"]), fontsize=7, color="dimgrey", xytext=(2, 2),
                    textcoords="offset points")
        _concurrency_axis(ax, x)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("latency per text, ms")
        ax.set_title(size)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(_title(results, "Latency percentiles of the INT8 ensemble (client SDK, gRPC)"))
    fig.tight_layout()
    files["latency_percentiles"] = _save(fig, out, "latency_percentiles.png")

    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        r = results["sizes"][size]
        best = {m: max(p["throughput_per_s"] for p in r["triton_sdk"][m]) for m in ("ner", "ner_fp32")}
        labels = ["ORT session\nbatch 1", "Triton\nbest concurrency"]
        fp32 = [r["baselines"]["ort_fp32"]["throughput_per_s"], best["ner_fp32"]]
        int8 = [r["baselines"]["ort_int8"]["throughput_per_s"], best["ner"]]
        rr = [r["baselines"]["ort_int8_reduce_range"]["throughput_per_s"], None]
        xs = range(len(labels))
        width = 0.27
        ax.bar([x - width for x in xs], fp32, width, label="FP32")
        ax.bar(list(xs), int8, width, label="INT8 (VNNI)")
        ax.bar([xs[0] + width], [rr[0]], width, label="INT8 reduce_range")
        for x, f, i in zip(xs, fp32, int8):
            ax.annotate(f"×{i / f:.2f}", (x, i), ha="center", xytext=(0, 3), textcoords="offset points", fontsize=8)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("texts per second")
        ax.set_title(size)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(_title(results, "FP32 against INT8"))
    fig.tight_layout()
    files["fp32_vs_int8"] = _save(fig, out, "fp32_vs_int8.png")
    return files


def _concurrency_axis(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name
