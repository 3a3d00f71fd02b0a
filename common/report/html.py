"""The report people look at: one self-contained HTML file (no network: the plots are SVG
embedded as data URIs, the style is inline) with the verdict at the top, tables of accuracy and
speed, plots, and the differing utterances with their word differences highlighted.

`accuracy_html`, `perf_html` and `smoke_html` take the documents accuracy_run.py,
accuracy_run_perf.py and the smoke chain write; `report_html` combines any of them."""

from __future__ import annotations

import base64
import datetime
import html
import os
from typing import Optional

from ..measure.accuracy import DEVICE_VS_REFERENCE, DEVICE_VS_TRUTH, REFERENCE_VS_TRUTH
from ..measure.compare import NORMALIZER, aligned_word_offsets, normalize_english
from ..measure.confidence import bootstrap_interval, rate, utterance_counts
from . import plots
from .tables import card_table, headline_of, headline_table, utterance_name

MAX_DIFFERENCES = 200  # differing utterances shown in full; the JSON has them all

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:1.2em 1.5em 3em}
h1{font-size:1.5em;margin:.2em 0 .4em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #d5d9e0}
.verdict{padding:.9em 1.2em;border-radius:8px;font-size:1.1em;font-weight:600;margin:.6em 0 1em}
.verdict.pass{background:#dff3e4;color:#14532d;border:1px solid #8fd19e}
.verdict.fail{background:#fbe1e1;color:#7f1d1d;border:1px solid #f0a3a3}
.verdict ul{margin:.4em 0 0;font-weight:400;font-size:.9em}
.meta{color:#4b5565;font-size:.88em;line-height:1.5}
table{border-collapse:collapse;margin:.4em 0 1em;background:#fff;font-size:.88em}
th,td{border:1px solid #d5d9e0;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef0f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1em}
figure.plot{margin:0;background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.5em}
figure.plot img{width:100%;height:auto;display:block}
figcaption{font-size:.82em;color:#4b5565;margin-top:.3em}
.diff{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;line-height:1.6}
del{background:#fbd4d4;color:#7f1d1d;text-decoration:line-through}ins{background:#cdeed6;color:#14532d;text-decoration:none}
.note{color:#6b7280;font-style:italic}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _pct(estimate: Optional[dict], signed: bool = False) -> str:
    """'11.45% [5.88, 16.44]' from {"value": ..., "ci95": [...]}."""
    if not estimate or estimate.get("value") is None:
        return "-"
    spec = "+.2f" if signed else ".2f"
    ci = estimate.get("ci95")
    text = f"{estimate['value'] * 100:{spec}}%"
    return text + (f" [{ci[0] * 100:{spec}}, {ci[1] * 100:{spec}}]" if ci else "")


def _table(header: list[str], rows: list[list], numeric: set = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='num'>{cell}</td>" if n in numeric else f"<td>{cell}</td>"
                                    for n, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(name: str, svg: Optional[str], caption: str) -> str:
    if svg is None:
        return ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f"<figure class='plot' data-plot='{name}'><img alt='{_e(caption)}' "
            f"src='data:image/svg+xml;base64,{data}'><figcaption>{_e(caption)}</figcaption></figure>")


def word_diff(reference: str, hypothesis: str) -> str:
    """The hypothesis against the reference, word by word: deleted words struck out, inserted
    ones marked, substitutions as both."""
    import jiwer

    if reference.split() == hypothesis.split():
        return _e(reference)
    if not reference.strip():
        return f"<ins>{_e(hypothesis)}</ins>"
    output = jiwer.process_words(reference, hypothesis or " ")
    ref_words, hyp_words, parts = output.references[0], output.hypotheses[0], []
    for chunk in output.alignments[0]:
        ref = " ".join(ref_words[chunk.ref_start_idx:chunk.ref_end_idx])
        hyp = " ".join(hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx])
        if chunk.type == "equal":
            parts.append(_e(ref))
        if chunk.type in ("substitute", "delete"):
            parts.append(f"<del>{_e(ref)}</del>")
        if chunk.type in ("substitute", "insert"):
            parts.append(f"<ins>{_e(hyp)}</ins>")
    return " ".join(parts)


# ------------------------------------------------------------------------------------ accuracy


def length_buckets(files: list[dict], seed: int = 0) -> tuple[list[dict], str]:
    """Corpus WER per length bucket with bootstrap intervals: both sides against the truth where
    there is one, else the device against the reference."""
    compared = [f for f in files if not f.get("error") and f.get("duration")]
    with_truth = [f for f in compared if "truth" in f]
    if with_truth:
        sides = [s for s in ("device", "reference") if s in with_truth[0]]
        chosen, what = with_truth, " and ".join(sides) + " against the truth"
        counts = [f["truth"].get("counts") or {s: utterance_counts(normalize_english(f["truth"]["text"]),
                                                                   normalize_english(f[s]["text"]))
                                                for s in sides} for f in with_truth]
    elif not any("reference" in f for f in compared):
        return [], "nothing to compare"
    else:
        chosen, what = compared, "device against the reference"
        counts = [{"device": utterance_counts(f["reference"]["text"], f["device"]["text"])} for f in compared]
    buckets = []
    for low, high in zip(plots.LENGTH_EDGES, plots.LENGTH_EDGES[1:]):
        inside = [c for f, c in zip(chosen, counts) if low <= f["duration"] < high]
        if not inside:
            continue
        label = f"{low:g}-{high:g} s" if high != float("inf") else f">= {low:g} s"
        bucket = {"label": label, "files": len(inside)}
        for side in ("device", "reference"):
            if side in inside[0]:
                errors = [c[side]["word_errors"] for c in inside]
                words = [c[side]["words"] for c in inside]
                value = rate(errors, words)
                bucket[side] = {"value": value, "ci95": bootstrap_interval(errors, words, seed)} if value is not None \
                    else None
        buckets.append(bucket)
    return buckets, what


def comparison_label(comparison: str, target: dict, ref: Optional[dict]) -> str:
    """'device vs reference (npu:0 bf16 vs cpu fp32)': a comparison and the sides behind it."""
    device = f"{target['device']} {target['dtype']}"
    reference = f"{ref['device']} fp32" if ref else ""
    sides = {DEVICE_VS_REFERENCE: f"{device} vs {reference}", DEVICE_VS_TRUTH: device, REFERENCE_VS_TRUTH: reference}
    return f"{comparison} ({sides[comparison]})" if comparison in sides else comparison


def _accuracy_tables(document: dict) -> str:
    result, target, ref = document["accuracy"], document["target"], document["reference"]
    agg = result["aggregate"]
    headers, rows = headline_table(result, _pct)
    rows = [[_e(comparison_label(row[0], target, ref))] + row[1:] for row in rows]
    parts = ["<h2>Accuracy</h2>",
             f"<p class='meta'>Files compared: {agg['compared']} of {agg['files']}"
             + (f" ({agg['errors']} failed)" if agg["errors"] else "") + ".</p>",
             "<div id='headline'>" + _table(headers, rows, set(range(1, len(headers)))) + "</div>"]
    if "drift" in agg:
        drift = agg["drift"]
        parts.append(f"<p class='meta'>Word-timestamp drift, {DEVICE_VS_REFERENCE} (mean / max; start, end): "
                     f"{_num(drift['start_mean'], '.3f')} / {_num(drift['start_max'], '.3f')} s, "
                     f"{_num(drift['end_mean'], '.3f')} / {_num(drift['end_max'], '.3f')} s "
                     f"({drift['aligned_words']} aligned words).</p>")
    if result.get("cards"):
        headers, card_rows = card_table(result)
        parts += ["<p>Every card:</p>", _table(headers, [[_e(str(v)) for v in row] for row in card_rows], {1, 2, 3})]
    truth = agg.get("truth")
    if truth:
        parts += _truth_tables(document, truth)
    return "".join(parts)


def _truth_tables(document: dict, truth: dict) -> list[str]:
    """How the figures against the truth were made, the paired difference (with a reference)
    and the worst utterances, device vs truth."""
    c = truth.get("confidence") or {}
    boot = c.get("bootstrap", {})
    parts = []
    if c.get("difference"):
        parts.append(f"<p class='meta'>device - reference, both against the truth (paired): WER "
                     f"{_pct(c['difference']['wer'], True)}, CER {_pct(c['difference']['cer'], True)}.</p>")
    parts.append(f"<p class='meta'>Against the ground truth ({truth['files']} files), after normalization: "
                 f"{_e(document.get('normalizer') or NORMALIZER)}. Intervals: {boot.get('resamples', '-')} bootstrap "
                 f"resamples of utterances, seed {boot.get('seed', '-')}, percentile method.</p>")
    worst = truth.get("worst") or []
    if worst:
        with_reference = all("reference_wer" in w for w in worst)
        parts += [f"<h2>Worst utterances, {DEVICE_VS_TRUTH}</h2>",
                  "<p class='meta'>Word differences: <del>in the truth only</del> <ins>in the device's "
                  "transcript only</ins>.</p>",
                  _table(["utterance", "audio s", "errors / words", f"WER {DEVICE_VS_TRUTH}"]
                         + ([f"WER {REFERENCE_VS_TRUTH}"] if with_reference else [])
                         + ["device transcript vs truth (normalized)"],
                         [[_e(utterance_name(w)), _num(w["duration"], ".2f"),
                           f"{w['word_errors']} / {w['words']}", _num(w["wer"])]
                          + ([_num(w["reference_wer"])] if with_reference else [])
                          + [f"<span class='diff'>{_truth_diff(w)}</span>"]
                          for w in worst], {1, 2, 3, 4} if with_reference else {1, 2, 3})]
    return parts


def _truth_diff(worst: dict) -> str:
    return word_diff(normalize_english(worst["truth"]), normalize_english(worst["device"]))


def _accuracy_plots(document: dict) -> list[str]:
    files = document["accuracy"]["files"]
    compared = [f for f in files if not f.get("error")]
    seed = ((document["accuracy"]["aggregate"].get("confidence") or {}).get("bootstrap") or {}).get("seed", 0)
    target, ref = document["target"], document["reference"]
    sides = {"device": f"device ({target['device']}, {target['dtype']})"}
    if ref:
        sides["reference"] = f"reference ({ref['device']}, fp32)"
    buckets, what = length_buckets(files, seed)
    starts, ends = [], []
    for f in compared if ref else []:
        s, e = aligned_word_offsets(f["reference"].get("words") or [], f["device"].get("words") or [])
        starts += [x * 1000 for x in s]
        ends += [x * 1000 for x in e]
    return [
        _figure("rtfx-by-length", plots.rtfx_by_length(compared, sides), "RTFx of each file against its length"),
        _figure("wer-by-length", plots.wer_by_length(buckets, what), f"WER by length bucket, {what}"),
        _figure("drift", plots.drift_histogram(starts, ends), f"Word-timestamp drift, {DEVICE_VS_REFERENCE}"),
    ]


def _differences(document: dict) -> str:
    """The utterances whose device transcript differs from the reference's (with a reference),
    and the inputs that failed."""
    failed = [f for f in document["accuracy"]["files"] if f.get("error")]
    parts = []
    if document["reference"]:
        parts += _reference_differences(document)
    if failed:
        parts += [f"<h2>Failed inputs ({len(failed)})</h2>",
                  _table(["input", "error"], [[_e(f["path"]), _e(f["error"])] for f in failed])]
    return "".join(parts)


def _reference_differences(document: dict) -> list[str]:
    files = [f for f in document["accuracy"]["files"] if not f.get("error") and not f["match"]]
    parts = [f"<h2>Differing utterances, {DEVICE_VS_REFERENCE} ({len(files)})</h2>"]
    if not files:
        parts.append("<p class='note'>Every compared transcript is identical on both devices.</p>")
    rows = [[_e(os.path.basename(f["path"])), _num(f["duration"], ".2f"), _num(f["wer"]),
             f"<span class='diff'>{word_diff(f['reference']['text'], f['device']['text'])}</span>"]
            for f in files[:MAX_DIFFERENCES]]
    if rows:
        parts.append(_table(["file", "audio s", "WER", "reference -> device (<del>reference only</del> "
                                                      "<ins>device only</ins>)"], rows, {1, 2}))
        parts[-1] = parts[-1].replace("&lt;del&gt;reference only&lt;/del&gt;", "<del>reference only</del>") \
            .replace("&lt;ins&gt;device only&lt;/ins&gt;", "<ins>device only</ins>")
    if len(files) > MAX_DIFFERENCES:
        parts.append(f"<p class='note'>{len(files) - MAX_DIFFERENCES} more in the JSON.</p>")
    return parts


# ----------------------------------------------------------------------------------------- perf


def _perf_tables(document: dict) -> str:
    rows = []
    for r in document.get("results", []):
        cfg, stats = r["config"], r["stats"]
        peak = (r.get("memory") or {}).get("peak")
        rows.append([_e(cfg["device"]), _e(cfg["dtype"]), _e(cfg["engine"] + plots.placement_label(cfg)),
                     _e(r.get("batching") or cfg["batch_size"]),
                     stats["n"],
                     _num(stats["median"]), _num(stats["p90"]), _num(stats["min"]), _num(stats["max"]),
                     _num(r["rtfx"], ".2f"), _num(r["throughput"]["files_per_second"], ".2f"),
                     "-" if peak is None else f"{peak / 2**20:.0f}",
                     {True: "same", False: "DIFFER", None: "-"}[(r.get("engine_check") or {}).get("identical")]])
    parts = ["<h2>Speed</h2>",
             _table(["device", "dtype", "engine", "batch", "runs", "median s", "p90 s", "min s", "max s", "RTFx",
                     "files/s", "peak MiB", "engines"], rows, set(range(3, 12)))]
    cold = document.get("cold_start") or {}
    if cold:
        parts.append(_table(["device", "import s", "model load s", "to device s", "first call s"],
                            [[_e(d), _num(c.get("import_seconds"), ".2f"), _num(c.get("load_seconds"), ".2f"),
                              _num(c.get("to_device_seconds"), ".3f"), _num(c.get("first_call_seconds"), ".2f")]
                             for d, c in cold.items()], {1, 2, 3, 4}))
    audio = sum(i.get("duration") or 0 for i in document.get("inputs", []))
    parts.append(f"<p class='meta'>A run transcribes every input once ({len(document.get('inputs', []))} inputs, "
                 f"{audio:.1f} s of audio) from memory; RTFx = audio seconds / median run seconds.</p>")
    return "".join(parts)


def _perf_plots(document: dict) -> list[str]:
    return [_figure("latency", plots.latency_distribution(document), "Latency of every timed run, per configuration"),
            _figure("stages", plots.stage_times(document), "Median time per stage, per configuration")]


# ------------------------------------------------------------------------------------- the page


def report_html(title: str, passed: bool, verdict: list[str], meta: list[str], accuracy: Optional[dict] = None,
                perf: Optional[dict] = None, extra: str = "") -> str:
    """The whole page: verdict, tables, plots, differences."""
    sections, figures = [], []
    if accuracy:
        sections.append(_accuracy_tables(accuracy))
    if perf:
        sections.append(_perf_tables(perf))
        figures += _perf_plots(perf)
    if accuracy:
        figures += _accuracy_plots(accuracy)
    figures = [f for f in figures if f]
    plots_html = ("<h2>Plots</h2><div class='plots'>" + "".join(figures) + "</div>") if figures else ""
    differences = _differences(accuracy) if accuracy else ""
    items = "".join(f"<li>{_e(line)}</li>" for line in verdict[1:])
    banner = (f"<div class='verdict {'pass' if passed else 'fail'}' id='verdict'>{_e(verdict[0])}"
              + (f"<ul>{items}</ul>" if items else "") + "</div>")
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta_html = "<div class='meta'>" + "<br>".join(_e(m) for m in meta + [f"generated {generated}"]) + "</div>"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{_e(title)}</h1>{banner}{meta_html}{extra}{''.join(sections)}{plots_html}{differences}"
            "</main></body></html>\n")


def _meta(document: dict) -> list[str]:
    env = document.get("environment") or {}
    model = document.get("model") or {}
    lines = [f"model: {model.get('spec', '-')}" + (f" ({model['note']})" if model.get("note") else "")]
    if env:
        lines.append(f"torch {env.get('torch')}, torch_npu {env.get('torch_npu') or '-'}, NeMo {env.get('nemo_toolkit')}; "
                     f"CPU {env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('torch_threads', '-')} torch threads)")
        if env.get("command_line"):
            lines.append(f"command: {env['command_line']}")
    return lines


def accuracy_html(document: dict) -> str:
    """The accuracy report; its title names the comparisons the run made."""
    verdict = document["accuracy"]["verdict"]
    target, ref = document["target"], document["reference"]
    meta = _meta(document) + [f"target {target['device']} ({target.get('name')}), {target['dtype']}; "
                              + (f"reference {ref['device']} ({ref.get('name')}), fp32" if ref else
                                 "no reference: the device against the ground truth only")]
    comparisons = ", ".join(row["comparison"] for row in headline_of(document["accuracy"])) or \
        (DEVICE_VS_REFERENCE if ref else DEVICE_VS_TRUTH)
    return report_html(f"Parakeet TDT accuracy: {comparisons}", verdict["passed"],
                       [document["summary"]], meta, accuracy=document)


def perf_html(document: dict) -> str:
    lines = ["PASS: every configuration measured" + ("" if document.get("engines_identical") is False else
                                                     ", engines give identical transcripts")
             if document["ok"] else "FAIL: " + ("the engines' transcripts differ"
                                                if document.get("engines_identical") is False else "see the tables")]
    lines += [f"input error: {e}" for e in document.get("input_errors", [])]
    return report_html("Parakeet TDT performance", document["ok"], lines, _meta(document), perf=document)


def smoke_html(document: dict) -> str:
    stages = document["stages"]
    passed = all(state == "passed" for state in stages.values())
    verdict = [("PASS" if passed else "FAIL") + ": " + ", ".join(f"{name} {state}" for name, state in stages.items())]
    accuracy, perf = document.get("accuracy"), document.get("perf")
    if accuracy:
        verdict.append(f"accuracy: {accuracy['summary']}")
    verdict.append(f"environment: {document['checks']['verdict']}")
    verdict += [f"{c['status']} {c['name']}: {c['value']} -> fix: {c['fix']}" for c in document["checks"]["findings"]]
    counts = document["checks"]["counts"]
    checks = _table(["environment checks", "PASS", "WARN", "FAIL"],
                    [["", counts["PASS"], counts["WARN"], counts["FAIL"]]], {1, 2, 3})
    meta = _meta(accuracy) if accuracy else []
    return report_html("Parakeet TDT check, accuracy and performance", passed, verdict, meta,
                       accuracy=accuracy, perf=perf, extra=checks)
