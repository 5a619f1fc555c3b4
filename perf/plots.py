"""PNG plots of one run: throughput against concurrency, latency percentiles against concurrency, FP32 against
INT8 (and the baselines)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402


def _title(results: dict, text: str) -> str:
    flags = []
    if results["run"].get("smoke"):
        flags.append("smoke run")
    if results["machine"].get("contended"):
        flags.append("POLLUTED: measured beside other work")
    return text + (f"\n({'; '.join(flags)})" if flags else "")


def render(results: dict, out: Path) -> dict:
    """Writes the plots into ``out``; returns their file names by plot."""
    panels = {
        "throughput_vs_concurrency": (_throughput, "Throughput against concurrency"),
        "latency_percentiles": (_latencies, "Latency percentiles of the INT8 ensemble (client SDK, gRPC)"),
        "fp32_vs_int8": (_precisions, "FP32 against INT8"),
    }
    files = {}
    for name, (draw, title) in panels.items():
        sizes = list(results["sizes"])
        fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            draw(ax, results["sizes"][size])
            ax.set_title(size)
        fig.suptitle(_title(results, title))
        fig.tight_layout()
        files[name] = f"{name}.png"
        fig.savefig(out / files[name], dpi=110)
        plt.close(fig)
    return files


def _throughput(ax, r: dict) -> None:
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
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _latencies(ax, r: dict) -> None:
    points = r["triton_sdk"]["ner"]
    x = [p["concurrency"] for p in points]
    for key, style in (("p50_ms", "o-"), ("p90_ms", "^-"), ("p95_ms", "s-"), ("p99_ms", "v-")):
        ax.plot(x, [p.get(key) for p in points], style, label=f"Triton INT8 {key[:-3]}")
    naive = r["baselines"]["naive"]
    ax.axhline(naive["p95_ms"], linestyle="--", color="grey", linewidth=1)
    ax.annotate("naive pipeline p95", (x[0], naive["p95_ms"]), fontsize=7, color="dimgrey", xytext=(2, 2),
                textcoords="offset points")
    _concurrency_axis(ax, x)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency")
    ax.set_ylabel("latency per text, ms")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def _precisions(ax, r: dict) -> None:
    best = {m: max(p["throughput_per_s"] for p in r["triton_sdk"][m]) for m in ("ner", "ner_fp32")}
    labels = ["ORT session\nbatch 1", "Triton\nbest concurrency"]
    fp32 = [r["baselines"]["ort_fp32"]["throughput_per_s"], best["ner_fp32"]]
    int8 = [r["baselines"]["ort_int8"]["throughput_per_s"], best["ner"]]
    xs = range(len(labels))
    width = 0.27
    ax.bar([x - width for x in xs], fp32, width, label="FP32")
    ax.bar(list(xs), int8, width, label="INT8 (VNNI)")
    ax.bar([xs[0] + width], [r["baselines"]["ort_int8_reduce_range"]["throughput_per_s"]], width,
           label="INT8 reduce_range")
    for x, f, i in zip(xs, fp32, int8):
        ax.annotate(f"×{i / f:.2f}", (x, i), ha="center", xytext=(0, 3), textcoords="offset points", fontsize=8)
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("texts per second")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def _concurrency_axis(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())

