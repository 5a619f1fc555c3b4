"""PNG plots of one run: throughput against concurrency, latency percentiles against concurrency, FP32 against
the INT8 builds (and the baselines)."""

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
        "fp32_vs_int8": (_precisions, "FP32 against the INT8 builds (static is served)"),
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
    for model, label in (("ner", "Triton INT8 static (SDK, gRPC)"), ("ner_fp32", "Triton FP32 (SDK, gRPC)")):
        points = r["triton_sdk"][model]
        ax.plot([p["concurrency"] for p in points], [p["throughput_per_s"] for p in points], "o-", label=label)
    pa = [p for p in r["perf_analyzer"].get("runs", []) if p["model"] == "ner" and p["protocol"] == "grpc"
          and p.get("throughput_per_s")]
    if pa:
        ax.plot([p["concurrency"] for p in pa], [p["throughput_per_s"] for p in pa], "s--",
                label="Triton INT8 (perf_analyzer, gRPC)")
    for key, label, style in (("ort_int8", "ORT session INT8 (static), batch 1", ":"),
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
    """In process, batch 1: FP32 and every INT8 build; through Triton at the best concurrency: FP32 and the served
    INT8. The ratio over each group's FP32 bar is written over its bars."""
    from .report import BUILDS

    best = {m: max(p["throughput_per_s"] for p in r["triton_sdk"][m]) for m in ("ner", "ner_fp32")}
    groups = [("ORT session\nbatch 1", {key: r["baselines"][f"ort_{key}"]["throughput_per_s"] for key, _, _ in BUILDS
                                         if f"ort_{key}" in r["baselines"]}),
              ("Triton\nbest concurrency", {"fp32": best["ner_fp32"], "int8": best["ner"]})]
    width, labelled = 0.8 / len(BUILDS), set()
    for x, (_, values) in enumerate(groups):
        present = [(i, key, label) for i, (key, label, _) in enumerate(BUILDS) if key in values]
        for slot, (i, key, label) in enumerate(present):
            xb, h = x + (slot - (len(present) - 1) / 2) * width, values[key]
            ax.bar(xb, h, width, color=f"C{i}", label=None if key in labelled else label)
            labelled.add(key)
            if key != "fp32":
                ax.annotate(f"×{h / values['fp32']:.2f}", (xb, h), ha="center", xytext=(0, 3),
                            textcoords="offset points", fontsize=7)
    ax.set_ylim(top=1.3 * max(h for _, values in groups for h in values.values()))  # room for the legend
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.set_ylabel("texts per second")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def _concurrency_axis(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())

