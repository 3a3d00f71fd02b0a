"""Console tables for results documents (the JSON is the record; these are for reading)."""

from __future__ import annotations

import os


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def accuracy_table(document: dict) -> str:
    from tabulate import tabulate

    result = document["accuracy"]
    target, ref = document["target"], document["reference"]
    rows = []
    for f in result["files"]:
        name = os.path.basename(f["path"])
        if f.get("error"):
            rows.append([name, _fmt(f.get("duration"), ".2f"), "ERROR", "-", "-", "-", "-", "-"])
            continue
        rows.append([name, _fmt(f["duration"], ".2f"), "yes" if f["match"] else "NO", _fmt(f["wer"], ".4f"),
                     _fmt(f["cer"], ".4f"), _fmt(f["drift"]["start_max"]), _fmt(f["reference"]["latency"]),
                     _fmt(f["device"]["latency"])])
    headers = ["file", "audio s", "match", "WER", "CER", "drift max s", f"ref {ref['device']} s",
               f"target {target['device']} s"]
    lines = [f"model: {document['model']['spec']}" + (f" ({document['model']['note']})"
                                                       if document["model"].get("note") else ""),
             f"target: {target['device']} ({target['name']}), {target['dtype']}"
             + (f", {', '.join(target['settings'])}" if target["settings"] else ""),
             f"reference: {ref['device']} ({ref['name']}), fp32", "",
             tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
    for f in result["files"]:
        if f.get("error"):
            lines.append(f"error: {f['error']}")
        elif f["differences"]:
            lines.append(f"{os.path.basename(f['path'])}: first differences (reference -> {target['device']}):")
            lines.extend(f"  word {d['position']}: {d['reference']!r} -> {d['device']!r} ({d['type']})"
                         for d in f["differences"])
    agg = result["aggregate"]
    if agg.get("truth"):
        truth = agg["truth"]
        lines.append(f"ground truth ({truth['files']} file(s), normalized): WER reference "
                     f"{_fmt(truth['reference']['wer'], '.4f')}, target {_fmt(truth['device']['wer'], '.4f')}")
    timing = agg["timing"]
    lines.append(f"timing (secondary; accuracy_run_perf.py measures speed properly): RTFx reference "
                 f"{_fmt(timing['reference']['rtfx'], '.2f')}, target {_fmt(timing['device']['rtfx'], '.2f')}")
    lines.append(document["summary"])
    return "\n".join(lines) + "\n"
