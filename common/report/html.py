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

from ..measure.compare import NORMALIZER, aligned_word_offsets, normalize_english
from ..measure.confidence import bootstrap_interval, rate, utterance_counts
from . import plots
from .tables import CARD_HEADERS, card_rows

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
        chosen, what = with_truth, "device and reference against the truth"
        counts = [f["truth"].get("counts") or {s: utterance_counts(normalize_english(f["truth"]["text"]),
                                                                   normalize_english(f[s]["text"]))
                                                for s in ("device", "reference")} for f in with_truth]
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


def _accuracy_tables(document: dict) -> str:
    result, target, ref = document["accuracy"], document["target"], document["reference"]
    agg = result["aggregate"]
    confidence = agg.get("confidence") or {}
    rows = [
        ["files compared", f"{agg['compared']} of {agg['files']}" + (f" ({agg['errors']} failed)" if agg["errors"] else "")],
        ["exact transcript matches", f"{agg['exact_matches']} ({_num(agg['match_rate'] and agg['match_rate'] * 100, '.1f')}%)"],
        [f"WER {target['device']} {target['dtype']} vs {ref['device']} fp32", _pct(confidence.get("wer") or {"value": agg["wer"]})],
        [f"CER {target['device']} {target['dtype']} vs {ref['device']} fp32", _pct(confidence.get("cer") or {"value": agg["cer"]})],
        ["word-timestamp drift (mean / max, start; end)",
         f"{_num(agg['drift']['start_mean'], '.3f')} / {_num(agg['drift']['start_max'], '.3f')} s; "
         f"{_num(agg['drift']['end_mean'], '.3f')} / {_num(agg['drift']['end_max'], '.3f')} s "
         f"({agg['drift']['aligned_words']} words)"],
    ]
    parts = ["<h2>Accuracy</h2>", _table(["measure", "value (95% bootstrap interval)"], rows, {1})]
    if result.get("cards"):
        parts += ["<p>Every card against the CPU reference:</p>",
                  _table(CARD_HEADERS, [[_e(str(v)) for v in row] for row in card_rows(result)], {1, 2, 3})]
    truth = agg.get("truth")
    if truth:
        c = truth.get("confidence") or {}
        truth_rows = [
            [f"device ({_e(target['device'])}, {_e(target['dtype'])})", _pct(c.get("device", {}).get("wer")),
             _pct(c.get("device", {}).get("cer"))],
            [f"reference ({_e(ref['device'])}, fp32)", _pct(c.get("reference", {}).get("wer")),
             _pct(c.get("reference", {}).get("cer"))],
            ["device - reference (paired)", _pct(c.get("difference", {}).get("wer"), True),
             _pct(c.get("difference", {}).get("cer"), True)],
        ]
        boot = c.get("bootstrap", {})
        parts += [f"<p>Against the ground truth ({truth['files']} files):</p>",
                  _table(["", "WER (95% interval)", "CER (95% interval)"], truth_rows, {1, 2}),
                  f"<p class='meta'>Normalization: {_e(document.get('normalizer') or NORMALIZER)}. Intervals: "
                  f"{boot.get('resamples', '-')} bootstrap resamples of utterances, seed {boot.get('seed', '-')}, "
                  f"percentile method.</p>"]
        worst = truth.get("worst") or []
        if worst:
            parts += ["<h2>Worst utterances against the truth</h2>",
                      "<p class='meta'>Word differences: <del>in the truth only</del> <ins>in the device's "
                      "transcript only</ins>.</p>",
                      _table(["file", "audio s", "errors / words", "WER device", "WER reference",
                              "device transcript vs truth (normalized)"],
                             [[_e(os.path.basename(w["path"])), _num(w["duration"], ".2f"),
                               f"{w['word_errors']} / {w['words']}", _num(w["wer"]), _num(w["reference_wer"]),
                               f"<span class='diff'>{word_diff(normalize_english(w['truth']), normalize_english(w['device']))}</span>"]
                              for w in worst], {1, 2, 3, 4})]
    return "".join(parts)


def _accuracy_plots(document: dict) -> list[str]:
    files = document["accuracy"]["files"]
    compared = [f for f in files if not f.get("error")]
    seed = ((document["accuracy"]["aggregate"].get("confidence") or {}).get("bootstrap") or {}).get("seed", 0)
    target, ref = document["target"], document["reference"]
    sides = {"device": f"device ({target['device']}, {target['dtype']})", "reference": f"reference ({ref['device']}, fp32)"}
    buckets, what = length_buckets(files, seed)
    starts, ends = [], []
    for f in compared:
        s, e = aligned_word_offsets(f["reference"].get("words") or [], f["device"].get("words") or [])
        starts += [x * 1000 for x in s]
        ends += [x * 1000 for x in e]
    return [
        _figure("rtfx-by-length", plots.rtfx_by_length(compared, sides), "RTFx of each file against its length"),
        _figure("wer-by-length", plots.wer_by_length(buckets, what), f"WER by length bucket, {what}"),
        _figure("drift", plots.drift_histogram(starts, ends), "Word-timestamp drift, device vs reference"),
    ]


def _differences(document: dict) -> str:
    files = [f for f in document["accuracy"]["files"] if not f.get("error") and not f["match"]]
    failed = [f for f in document["accuracy"]["files"] if f.get("error")]
    parts = [f"<h2>Differing utterances ({len(files)})</h2>"]
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
    if failed:
        parts += [f"<h2>Failed inputs ({len(failed)})</h2>",
                  _table(["input", "error"], [[_e(f["path"]), _e(f["error"])] for f in failed])]
    return "".join(parts)


# ----------------------------------------------------------------------------------------- perf


def _perf_tables(document: dict) -> str:
    rows = []
    for r in document.get("results", []):
        cfg, stats = r["config"], r["stats"]
        peak = (r.get("memory") or {}).get("peak")
        rows.append([_e(cfg["device"]), _e(cfg["dtype"]), _e(cfg["engine"] + plots.placement_label(cfg)), cfg["batch_size"],
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
    verdict = document["accuracy"]["verdict"]
    target, ref = document["target"], document["reference"]
    meta = _meta(document) + [f"target {target['device']} ({target.get('name')}), {target['dtype']}; "
                              f"reference {ref['device']} ({ref.get('name')}), fp32"]
    return report_html("Parakeet TDT accuracy: device vs reference", verdict["passed"], [document["summary"]], meta,
                       accuracy=document)


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
    failed = [c for c in document["checks"]["checks"] if c["status"] == "FAIL"]
    verdict += [f"check {c['name']}: {c['value']} -> {c['fix']}" for c in failed]
    counts = document["checks"]["counts"]
    checks = _table(["environment checks", "PASS", "WARN", "FAIL"],
                    [["", counts["PASS"], counts["WARN"], counts["FAIL"]]], {1, 2, 3})
    meta = _meta(accuracy) if accuracy else []
    return report_html("Parakeet TDT check, accuracy and performance", passed, verdict, meta,
                       accuracy=accuracy, perf=perf, extra=checks)
