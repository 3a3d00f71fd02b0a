"""Console tables for results documents (the JSON is the record; these are for reading)."""

from __future__ import annotations

import os


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def interval_text(estimate: dict, signed: bool = False) -> str:
    """'0.1145 [0.0588, 0.1644]' for {"value": ..., "ci95": [low, high]}."""
    spec = "+.4f" if signed else ".4f"
    if not estimate or estimate.get("value") is None:
        return "-"
    ci = estimate.get("ci95")
    return f"{estimate['value']:{spec}}" + (f" [{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else "")


def card_rows(result: dict) -> list[list]:
    """A row per card of a multi-card check (torchrun ranks, or --all-cards): card, files
    compared, exact matches, WER, verdict."""
    return [[c["card"], f"{c['aggregate']['compared']} of {c['aggregate']['files']}", c["aggregate"]["exact_matches"],
             _fmt(c["aggregate"]["wer"], ".4f"), "PASS" if c["verdict"]["passed"] else "FAIL"]
            for c in result.get("cards") or []]


CARD_HEADERS = ["card", "compared", "exact matches", "WER", "verdict"]


WORST_SHOWN = 5  # worst utterances on the console (the JSON keeps more, the HTML report shows them)


def headline_of(result: dict) -> list[dict]:
    """The result's figures by comparison (documents written before the headline: made from the
    aggregate)."""
    if "headline" in result:
        return result["headline"]
    from ..measure.accuracy import headline

    return headline(result["aggregate"])


def headline_table(result: dict, rate_text=interval_text) -> tuple[list[str], list[list]]:
    """Headers and a row per comparison (device vs reference, device vs truth, reference vs
    truth): files, exact matches (a column only with a reference), WER and CER with their 95%
    intervals as `rate_text` writes them."""
    rows = headline_of(result)
    matches = any("match_rate" in row for row in rows)
    headers = ["comparison", "files"] + (["exact matches"] if matches else []) + ["WER [95% interval]",
                                                                                  "CER [95% interval]"]
    return headers, [[row["comparison"], str(row["files"])]
                     + ([f"{row['exact_matches']} ({_fmt(row['match_rate'] and row['match_rate'] * 100, '.1f')}%)"
                         if "match_rate" in row else "-"] if matches else [])
                     + [rate_text(row["wer"]), rate_text(row["cer"])] for row in rows]


def card_table(result: dict) -> tuple[list[str], list[list]]:
    """Headers and a row per card, each figure named by its comparison: device vs reference with
    a reference, device vs truth without one."""
    from ..measure.accuracy import DEVICE_VS_REFERENCE, DEVICE_VS_TRUTH

    cards = result.get("cards") or []
    if "match_rate" in result["aggregate"]:
        return ["card", "compared", "exact matches", f"WER {DEVICE_VS_REFERENCE}", "verdict"], card_rows(result)
    truth = [next((r for r in c.get("headline", []) if r["comparison"] == DEVICE_VS_TRUTH), None) for c in cards]
    return (["card", "compared", f"WER {DEVICE_VS_TRUTH}", "verdict"],
            [[c["card"], f"{c['aggregate']['compared']} of {c['aggregate']['files']}",
              _fmt(t and t["wer"]["value"], ".4f"), "PASS" if c["verdict"]["passed"] else "FAIL"]
             for c, t in zip(cards, truth)])


def accuracy_table(document: dict) -> str:
    """The console report: the setup, a row per file, the figures by comparison with their
    intervals, the worst utterances against the truth, the verdict."""
    from tabulate import tabulate

    result = document["accuracy"]
    target, ref = document["target"], document["reference"]
    lines = [f"model: {document['model']['spec']}" + (f" ({document['model']['note']})"
                                                       if document["model"].get("note") else ""),
             f"target: {target['device']} ({target['name']}), {target['dtype']}"
             + (f", encoder in {target['encoder_runtime']}" if target.get("encoder_runtime", "torch") != "torch" else "")
             + (f", {', '.join(target['settings'])}" if target["settings"] else ""),
             f"reference: {ref['device']} ({ref['name']}), fp32" if ref else
             "reference: none (the device against the ground truth only)", "",
             tabulate(*_file_table(result["files"], target, ref), tablefmt="simple", disable_numparse=True)]
    for f in result["files"]:
        if f.get("error"):
            lines.append(f"error: {f['error']}")
        elif f.get("differences"):
            lines.append(f"{os.path.basename(f['path'])}: first differences (reference -> {target['device']}):")
            lines.extend(f"  word {d['position']}: {_short(d['reference'])!r} -> {_short(d['device'])!r} ({d['type']})"
                         for d in f["differences"])
    agg = result["aggregate"]
    headers, rows = headline_table(result)
    lines += ["", tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
    truth = agg.get("truth")
    if truth:
        confidence = truth.get("confidence") or {}
        if confidence.get("difference"):
            lines.append("device - reference, both against the truth (paired): WER "
                         + interval_text(confidence["difference"]["wer"], signed=True) + ", CER "
                         + interval_text(confidence["difference"]["cer"], signed=True))
        boot = confidence.get("bootstrap") or {}
        lines.append(f"95% bootstrap intervals ({boot.get('resamples', '-')} resamples of utterances, seed "
                     f"{boot.get('seed', '-')}); against the truth after normalization: "
                     f"{document.get('normalizer') or '-'}")
        lines += _worst_lines(truth)
    if result.get("cards"):
        headers, rows = card_table(result)
        lines += ["", tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True), ""]
    timing = agg["timing"]
    lines.append("timing (secondary; accuracy_run_perf.py measures speed properly): RTFx "
                 + (f"reference {_fmt(timing['reference']['rtfx'], '.2f')}, " if "reference" in timing else "")
                 + f"target {_fmt(timing['device']['rtfx'], '.2f')}")
    lines.append(document["summary"])
    return "\n".join(lines) + "\n"


def _file_table(files: list[dict], target: dict, ref) -> tuple[list[list], list[str]]:
    """A row per file: with a reference, device vs reference (match, WER, CER, drift) and times;
    device vs truth where a file has a truth."""
    with_truth = any("truth" in f for f in files)
    headers = ["file", "audio s"]
    if ref:
        headers += ["match", "WER dev vs ref", "CER dev vs ref", "drift max s"]
    headers += ["WER dev vs truth", "CER dev vs truth"] if with_truth else []
    headers += ([f"ref {ref['device']} s"] if ref else []) + [f"target {target['device']} s"]
    rows = []
    for f in files:
        name = os.path.basename(f["path"])
        if f.get("error"):
            rows.append([name, _fmt(f.get("duration"), ".2f"), "ERROR"] + ["-"] * (len(headers) - 3))
            continue
        row = [name, _fmt(f["duration"], ".2f")]
        if ref:
            row += ["yes" if f["match"] else "NO", _fmt(f["wer"], ".4f"), _fmt(f["cer"], ".4f"),
                    _fmt(f["drift"]["start_max"])]
        if with_truth:
            versus_truth = (f.get("truth") or {}).get("device") or {}
            row += [_fmt(versus_truth.get("wer"), ".4f"), _fmt(versus_truth.get("cer"), ".4f")]
        row += ([_fmt(f["reference"]["latency"])] if ref else []) + [_fmt(f["device"]["latency"])]
        rows.append(row)
    return rows, headers


def utterance_name(entry: dict) -> str:
    """The test set's id of an utterance where it has one, else its file name."""
    return str(entry["id"]) if entry.get("id") is not None else os.path.basename(entry["path"])


def _worst_lines(truth: dict) -> list[str]:
    """The utterances with the most word errors, device vs truth, with both texts as scored."""
    from ..measure.compare import normalize_english

    worst = (truth.get("worst") or [])[:WORST_SHOWN]
    if not worst:
        return [] if "worst" not in truth else ["no word errors against the truth"]
    lines = ["", f"worst utterances, device vs truth (the {len(worst)} with the most word errors; normalized texts):"]
    for w in worst:
        name = utterance_name(w)
        lines += [f"  {name}: WER {w['wer']:.4f} ({w['word_errors']} error(s) / {w['words']} word(s))",
                  f"    truth:  {normalize_english(w['truth'])}",
                  f"    device: {normalize_english(w['device'])}"]
    return lines


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def perf_rows(document: dict) -> list[dict]:
    rows = []
    for r in document["results"]:
        cfg, stats, stages = r["config"], r["stats"], r["stage_median"]
        decoding = r.get("decoding_counts") or {}
        rows.append({
            "device": cfg["device"], "dtype": cfg["dtype"], "engine": cfg["engine"], "batch_size": cfg["batch_size"],
            "batch_seconds": cfg.get("batch_seconds"), "batching": r.get("batching"),
            "decode_graphs": cfg.get("decode_graphs", "off"), "decoder_device": cfg.get("decoder_device") or cfg["device"],
            "encoder_runtime": cfg.get("encoder_runtime", "torch"),
            "audio_s": r["audio_seconds"], "runs": stats["n"], "mean_s": stats["mean"], "median_s": stats["median"],
            "p90_s": stats["p90"], "p99_s": stats["p99"], "min_s": stats["min"], "max_s": stats["max"],
            "stdev_s": stats["stdev"], "rtfx": r["rtfx"],
            "features_s": stages.get("features"), "encoder_s": stages.get("encoder"),
            "decoding_s": stages.get("decoding"), "other_s": stages.get("other"),
            "peak_memory_bytes": r["memory"]["peak"], "memory_kind": r["memory"]["kind"],
            "engines_identical": r.get("engine_check", {}).get("identical"),
            "threads": document["environment"]["torch_threads"],
            # counted by a counting backend only (the emulated npu): device launches and host syncs of decoding
            "decoding_launches_per_batch": decoding.get("per_batch", {}).get("launches"),
            "decoding_syncs_per_batch": decoding.get("per_batch", {}).get("host_syncs"),
            "decoding_launches_per_audio_s": decoding.get("per_audio_second", {}).get("launches"),
            "decoding_syncs_per_audio_s": decoding.get("per_audio_second", {}).get("host_syncs"),
        })
    return rows


def perf_csv(document: dict) -> str:
    import csv
    import io

    rows = perf_rows(document)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()) if rows else ["device"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def perf_table(document: dict) -> str:
    from tabulate import tabulate

    lines = [f"model: {document['model']['spec']}" + (f" ({document['model']['note']})"
                                                       if document["model"].get("note") else ""),
             f"inputs: {len(document['inputs'])} file(s), "
             f"{sum(i['duration'] for i in document['inputs']):.2f} s of audio; "
             f"{document['options']['warmup']} warm-up + {document['options']['runs']} timed runs per row "
             f"(stage columns: {document['options'].get('stage_runs', 0)} separate stage run(s), each stage "
             f"synchronized); {document['environment']['torch_threads']} CPU thread(s), "
             f"{document['environment']['cpu']}",
             "ran: " + "; ".join(engines_run(document)), ""]
    cold = [[dev, _fmt(c["import_seconds"]), _fmt(c["load_seconds"]), _fmt(c["to_device_seconds"]),
             _fmt(c.get("first_call_seconds"))] for dev, c in document["cold_start"].items()]
    lines += ["cold start (s):", tabulate(cold, headers=["device", "import", "load", "to device", "first call"],
                                          tablefmt="simple", disable_numparse=True), ""]
    table = perf_rows(document)
    rows = [[r["device"], r["dtype"], r["engine"], (r["batching"] or str(r["batch_size"])).replace("batch ", ""), r["decode_graphs"], r["decoder_device"],
             r["encoder_runtime"], _fmt(r["median_s"], ".4f"), _fmt(r["p90_s"], ".4f"),
             _fmt(r["stdev_s"], ".4f"), _fmt(r["rtfx"], ".2f"), _fmt(r["features_s"], ".4f"), _fmt(r["encoder_s"], ".4f"),
             _fmt(r["decoding_s"], ".4f"), _fmt(r["other_s"], ".4f"), _mib(r["peak_memory_bytes"]),
             {True: "same", False: "DIFFER", None: "-"}[r["engines_identical"]]] for r in table]
    lines.append(tabulate(rows, headers=["device", "dtype", "engine", "batch", "graphs", "decoder", "encoder in",
                                         "median s", "p90 s",
                                         "stdev s", "RTFx", "features s", "encoder s", "decoding s", "other s",
                                         "peak MiB", "engines"],
                          tablefmt="simple", disable_numparse=True))
    counted = [r for r in table if r["decoding_launches_per_batch"] is not None]
    if counted:  # only a counting backend (the emulated npu) has these
        lines += ["", "decoding on the device (counted by the backend; a graph replay is one launch):",
                  tabulate([[r["device"], r["dtype"], r["batch_size"], r["decode_graphs"], r["decoder_device"],
                             _fmt(r["decoding_launches_per_batch"], ".1f"), _fmt(r["decoding_syncs_per_batch"], ".1f"),
                             _fmt(r["decoding_launches_per_audio_s"], ".1f"), _fmt(r["decoding_syncs_per_audio_s"], ".1f")]
                            for r in counted],
                           headers=["device", "dtype", "batch", "graphs", "decoder", "launches/batch", "syncs/batch",
                                    "launches/audio s", "syncs/audio s"], tablefmt="simple", disable_numparse=True), ""]
    for ratio in document["ratios"]:
        lines.append(f"ratio {ratio['other']} / {ratio['base']} ({ratio['dtype']}, {ratio['engine']}, batch "
                     f"≤{ratio['batch_size']}): median latency x{ratio['latency_ratio']:.2f}")
    lines.append("nemo engine: 'other' = NeMo's dataloader + TDT decoding; batched engine: 'other' = padding and copies")
    if not document["engines_identical"]:
        lines.append("FAIL: the nemo and batched engines gave different transcripts (see engine_check in the JSON)")
    return "\n".join(lines) + "\n"


def engines_run(document: dict) -> list[str]:
    """Which engine and batching the results document's rows ran, e.g. 'engine batched, batch ≤16
    files / ≤120 s', each once, in row order."""
    return list(dict.fromkeys(f"engine {r['config']['engine']}, {r.get('batching') or 'batch ' + str(r['config']['batch_size'])}"
                              for r in document["results"]))


def checks_table(checks: dict) -> str:
    """The checks, then every WARN and FAIL with its fix, then the verdict."""
    from tabulate import tabulate

    rows = [[c["name"], c["status"], c["value"]] for c in checks["checks"]]
    lines = [tabulate(rows, headers=["check", "status", "found"], tablefmt="simple", disable_numparse=True)]
    if checks["findings"]:
        lines += ["", "findings, with their fixes:"] + [line for f in checks["findings"] for line in finding_lines(f)]
    lines.append(f"\n{checks_verdict(checks)}")
    return "\n".join(lines) + "\n"


def finding_lines(finding: dict) -> list[str]:
    return [f"  {finding['status']} {finding['name']}: {finding['value']}", f"       fix: {finding['fix']}"]


def checks_verdict(checks: dict) -> str:
    """'READY (CPU only: the NPU cannot be used: ...): 14 pass, 5 warn, 0 fail'."""
    counts = checks["counts"]
    return f"{checks['verdict']}: {counts['PASS']} pass, {counts['WARN']} warn, {counts['FAIL']} fail"


def _targets(accuracy: dict) -> str:
    """The device(s) compared: one, or every card of an --all-cards check."""
    return ", ".join(t["device"] for t in accuracy.get("targets") or [accuracy["target"]])


def _cards_first(summary: str) -> str:
    """A summary whose per-card part ("cards: 7 of 8 agree, disagreeing: npu:5") comes first, so
    a truncated table cell still names the failing card."""
    head, found, cards = summary.partition("; cards: ")
    return f"cards: {cards}; {head}" if found else summary


def _md_cell(text, limit: int = 120) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verdict(state: str) -> str:
    return {"passed": "PASS", "failed": "FAIL"}.get(state, state)


def findings_markdown(findings: list[dict]) -> list[str]:
    """'## Findings': every WARN and FAIL of the checks with its fix (nothing when all passed)."""
    if not findings:
        return []
    return ["## Findings", ""] + [f"- **{f['status']}** {f['name']}: {f['value']}  \n  Fix: {f['fix']}"
                                  for f in findings] + [""]


def smoke_markdown(document: dict) -> str:
    """The report in the shape of the original adaptation's tables."""
    checks, stages = document["checks"], document["stages"]
    counts = checks["counts"]
    lines = ["# Parakeet TDT check, accuracy and performance", ""]
    accuracy, perf = document.get("accuracy"), document.get("perf")
    if accuracy:
        env = accuracy["environment"]
        lines += [f"Model: {accuracy['model']['spec']}" + (f" ({accuracy['model']['note']})"
                                                           if accuracy["model"].get("note") else ""),
                  f"Software: torch {env['torch']}, torch_npu {env['torch_npu'] or '-'}, NeMo {env['nemo_toolkit']}; "
                  f"CPU: {env['cpu']} ({env['cpu_count']} cores, {env.get('torch_threads', '-')} torch threads)", ""]
    lines += ["| Stage | Result |", "|---|---|",
              f"| Environment checks | {_verdict(stages['checks'])} ({_md_cell(checks_verdict(checks), 400)}) |"]
    if accuracy:
        lines.append(f"| Accuracy ({_targets(accuracy)} vs {accuracy['reference']['device']}, "
                     f"{accuracy['target']['dtype']}) | {_md_cell(_cards_first(accuracy['summary']), 400)} |")
    if perf:
        lines.append(f"| Performance | {_verdict(stages['perf'])} (transcripts of both engines "
                     f"{'identical' if perf['engines_identical'] else 'DIFFER'}) |")
    lines.append("")
    lines += findings_markdown(checks["findings"])
    if not accuracy:
        lines.append("Stopped after the environment checks.")
        return "\n".join(lines) + "\n"
    target, ref = _targets(accuracy), accuracy["reference"]["device"]
    cards = accuracy["accuracy"].get("cards")
    if cards:
        lines += ["## Cards", "", "| " + " | ".join(h.capitalize() if h != "WER" else h for h in CARD_HEADERS) + " |", "|---" * len(CARD_HEADERS) + "|"]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in card_rows(accuracy["accuracy"])] + [""]
    lines += ["## Accuracy", "", f"| File | Audio (s) | Match | WER | device ({target}) transcript | "
              f"reference ({ref}) transcript |",
              "|---|---|---|---|---|---|"]
    for f in accuracy["accuracy"]["files"]:
        name = os.path.basename(f["path"]) + (f" ({f.get('card')})" if cards else "")
        if f.get("error"):
            lines.append(f"| {_md_cell(name)} | - | ERROR | - | {_md_cell(f['error'])} | |")
        else:
            lines.append(f"| {_md_cell(name)} | {f['duration']:.2f} | "
                         f"{'yes' if f['match'] else 'NO'} | {f['wer']:.4f} | {_md_cell(f['device']['text'])} | "
                         f"{_md_cell(f['reference']['text'])} |")
    truth = accuracy["accuracy"]["aggregate"].get("truth")
    if truth:
        lines += ["", f"Against the manifest's text ({truth['files']} file(s), normalized): WER device "
                      f"{truth['device']['wer']:.4f}, reference {truth['reference']['wer']:.4f}"]
        confidence = truth.get("confidence")
        if confidence:
            lines[-1] += (f"; 95% bootstrap intervals: device {interval_text(confidence['device']['wer'])}, reference "
                          f"{interval_text(confidence['reference']['wer'])}, device - reference "
                          f"{interval_text(confidence['difference']['wer'], signed=True)}")
    opts = perf["options"]
    lines += ["", f"## Performance ({opts['warmup']} warm-up + {opts['runs']} timed runs, "
                  f"{'; '.join(engines_run(perf))})", "",
              "| Device | Latency median (s) | p90 (s) | RTFx | Load (s) | First call (s) | Peak memory (MiB) |",
              "|---|---|---|---|---|---|---|"]
    for r in perf["results"]:
        dev = r["config"]["device"]
        cold = perf["cold_start"][dev]
        lines.append(f"| {dev} | {r['stats']['median']:.4f} | {r['stats']['p90']:.4f} | {r['rtfx']:.2f} | "
                     f"{cold['load_seconds']:.2f} | {_fmt(cold.get('first_call_seconds'), '.3f')} | "
                     f"{_mib(r['memory']['peak'])} ({r['memory']['kind']}) |")
    for ratio in perf["ratios"]:
        lines.append(f"\n{ratio['other']} median latency = {ratio['latency_ratio']:.2f} x {ratio['base']}")
    cold = document.get("cold_start")
    if cold:
        lines += ["", f"Cold start on {cold['device']}: import {cold['import_seconds']:.2f} s, load "
                      f"{cold['load_seconds']:.2f} s, first call {cold['first_call_seconds']:.3f} s "
                      f"(measured {cold['measured']})."]
    return "\n".join(lines) + "\n"
