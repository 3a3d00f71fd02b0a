"""The report's plots, drawn with matplotlib (Agg, no display) and returned as SVG text.

Each function takes the results documents' plain data and returns one SVG, or None when the
documents hold nothing to plot (a perf-only run has no per-file timings, for instance)."""

from __future__ import annotations

import io
from typing import Optional

LENGTH_EDGES = (0.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, float("inf"))  # seconds: the WER-by-length buckets
COLORS = {"device": "#1f77b4", "reference": "#ff7f0e"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "parakeet-npu", "svg.fonttype": "none", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(figure) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    return buffer.getvalue()


def latency_distribution(perf: dict) -> Optional[str]:
    """Every timed run's latency, per configuration: a box with the runs as points."""
    results = [r for r in perf.get("results", []) if r.get("latencies")]
    if not results:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * len(results) + 1))
    labels = [_config_label(r["config"]) for r in results]
    data = [r["latencies"] for r in results]
    axes.boxplot(data, orientation="horizontal", tick_labels=labels, showfliers=False, widths=0.5)
    for row, values in enumerate(data, start=1):
        axes.scatter(values, [row] * len(values), s=14, color=COLORS["device"], alpha=0.7, zorder=3)
    axes.set_xlabel("seconds per run (every input once)")
    axes.set_title("Latency distribution per configuration")
    axes.set_xlim(left=0)
    return _svg(figure)


def stage_times(perf: dict) -> Optional[str]:
    """Median seconds per stage (features, encoder, decoding, other), stacked per configuration."""
    results = [r for r in perf.get("results", []) if r.get("stage_median")]
    if not results:
        return None
    plt = _pyplot()
    stages = ("features", "encoder", "decoding", "other")
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * len(results) + 1.4))
    labels = [_config_label(r["config"]) for r in results]
    left = [0.0] * len(results)
    for stage, color in zip(stages, ("#9467bd", "#1f77b4", "#2ca02c", "#7f7f7f")):
        values = [r["stage_median"].get(stage) or 0.0 for r in results]
        axes.barh(labels, values, left=left, color=color, label=stage, height=0.5)
        left = [a + b for a, b in zip(left, values)]
    axes.set_xlabel("median seconds per run")
    axes.set_title("Time per stage")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), fontsize=8, frameon=False, ncols=4)
    axes.invert_yaxis()
    return _svg(figure)


def rtfx_by_length(files: list[dict], sides: dict) -> Optional[str]:
    """RTFx of each file against its length, per side that was timed (`sides`: key -> label)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.4))
    plotted = False
    for side, label in sides.items():
        points = [(f["duration"], f[side]["rtfx"]) for f in files
                  if not f.get("error") and f[side].get("rtfx") is not None and f["duration"]]
        if points:
            axes.scatter(*zip(*points), s=18, label=label, color=COLORS[side], alpha=0.8)
            plotted = True
    if not plotted:
        plt.close(figure)
        return None
    axes.set_xlabel("audio length (s)")
    axes.set_ylabel("RTFx (audio s / processing s)")
    axes.set_title("RTFx against audio length (one file at a time)")
    axes.set_ylim(bottom=0)
    axes.legend(frameon=False)
    return _svg(figure)


def wer_by_length(buckets: list[dict], what: str) -> Optional[str]:
    """Corpus WER per length bucket with its 95% interval, per side."""
    if not buckets:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.4))
    sides = [s for s in ("device", "reference") if any(b.get(s) for b in buckets)]
    width = 0.8 / max(len(sides), 1)
    for n, side in enumerate(sides):
        xs, ys, low, high = [], [], [], []
        for position, bucket in enumerate(buckets):
            estimate = bucket.get(side)
            if not estimate or estimate["value"] is None:
                continue
            ci = estimate["ci95"] or [estimate["value"], estimate["value"]]
            xs.append(position + (n - (len(sides) - 1) / 2) * width)
            ys.append(estimate["value"] * 100)
            low.append(max(estimate["value"] - ci[0], 0) * 100)
            high.append(max(ci[1] - estimate["value"], 0) * 100)
        axes.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=4, color=COLORS[side], label=side)
    axes.set_xticks(range(len(buckets)), [f"{b['label']}\n({b['files']} files)" for b in buckets])
    axes.set_ylabel("WER % (95% interval)")
    axes.set_title(f"WER by length, {what}")
    axes.set_ylim(bottom=0)
    axes.legend(frameon=False)
    return _svg(figure)


def drift_histogram(starts_ms: list[float], ends_ms: list[float]) -> Optional[str]:
    """How far the device's word start and end times lie from the reference's (aligned words)."""
    if not starts_ms:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.2))
    top = max(max(starts_ms), max(ends_ms), 1.0)
    bins = [top * k / 20 for k in range(21)]
    axes.hist([starts_ms, ends_ms], bins=bins, label=["word start", "word end"], color=["#1f77b4", "#2ca02c"])
    axes.set_xlabel("|device - reference| (ms)")
    axes.set_ylabel("words")
    axes.set_title(f"Word-timestamp drift ({len(starts_ms)} aligned words)")
    axes.legend(frameon=False)
    return _svg(figure)


def _config_label(config: dict) -> str:
    return f"{config['device']} {config['dtype']} {config['engine']} b{config['batch_size']}" + placement_label(config)


def placement_label(config: dict) -> str:
    """' graphs on', ' decoder cpu', ' encoder onnxruntime': how it ran, where a perf sweep set it."""
    graphs = config.get("decode_graphs", "off")
    decoder = config.get("decoder_device")
    runtime = config.get("encoder_runtime", "torch")
    return (f" graphs {graphs}" if graphs != "off" else "") + \
        (f" decoder {decoder}" if decoder and decoder != config["device"] else "") + \
        (f" encoder {runtime}" if runtime != "torch" else "")
