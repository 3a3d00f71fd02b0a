#!/usr/bin/env python3
"""Benchmark transcription latency and RTFx on one or more devices, the way ASR benchmarks do:
cold start reported apart, warm-up runs, then timed runs with the device synchronized before
every clock read, statistics, a stage breakdown and peak memory.

A run = every input transcribed once from in-memory 16 kHz arrays (inputs sorted longest first,
cut into batches); reading and resampling the files is not timed. RTFx = audio seconds / median
run seconds.

Examples:
  python accuracy_run_perf.py --audio sample.wav --warmup 1 --runs 5
  python accuracy_run_perf.py --audio clips/ --devices npu:0,cpu --batch-sizes 1,4,16 --output perf.json
  python accuracy_run_perf.py --audio sample.wav --engine nemo,direct --dtype fp32,bf16 --csv perf.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import cli  # noqa: E402


def comma_list(kind):
    def parse(text: str):
        values = [v.strip() for v in text.split(",") if v.strip()]
        try:
            return [kind(v) for v in values]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list") from None
    return parse


def build_parser():
    parser = cli.new_parser(__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    parser.add_argument("--devices", type=comma_list(str), default=None,
                        help="several devices side by side, e.g. npu:0,cpu (overrides --device)")
    parser.add_argument("--dtype", type=comma_list(str), default=["fp32"], help="fp32,bf16,fp16 (comma list)")
    parser.add_argument("--engine", type=comma_list(str), default=["nemo"],
                        help="nemo: model.transcribe() as the original adaptation; direct: preprocessor, "
                             "encoder and decoding on tensors (comma list)")
    parser.add_argument("--batch-sizes", type=comma_list(int), default=[1], help="batch size sweep, e.g. 1,4,16")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per configuration")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per configuration")
    parser.add_argument("--no-engine-check", action="store_true",
                        help="skip running the other engine once to compare transcripts")
    parser.add_argument("--csv", metavar="FILE", default=None, help="also write one CSV row per configuration")
    cli.add_output_arguments(parser)
    return parser


def check_options(args) -> None:
    from common.errors import SetupError
    from common.precision import check_dtype
    from common.transcriber import ENGINES

    for dtype in args.dtype:
        check_dtype(dtype)
    for engine in args.engine:
        if engine not in ENGINES:
            raise SetupError(f"--engine {engine!r}: not one of {', '.join(ENGINES)}")
    if any(b < 1 for b in args.batch_sizes) or args.runs < 1 or args.warmup < 0:
        raise SetupError("--batch-sizes and --runs must be at least 1, --warmup at least 0")


def perf_command(args) -> int:
    from common.files import write_json_atomic, write_text_atomic
    from common.formats import render_json
    from common.reports import perf_csv, perf_table

    check_options(args)
    start = time.perf_counter()
    from common.models import import_nemo_asr

    import_nemo_asr(quiet=not args.debug)
    import_seconds = time.perf_counter() - start
    document = run_benchmark(args, import_seconds)
    if args.output:
        write_json_atomic(args.output, document)
    if args.csv:
        write_text_atomic(args.csv, perf_csv(document))
    sys.stdout.write(render_json(document) if args.json else perf_table(document))
    return 0 if document["ok"] else 1


def load_inputs(args):
    """Decode every input once, up front; bad files are reported and left out."""
    from common.audio import duration_seconds, load_audio
    from common.errors import InputError
    from common.inputs import collect_inputs

    paths, signals, errors = [], [], []
    for item in collect_inputs(cli.input_paths(args)):
        try:
            if item.error:
                raise InputError(item.error)
            signals.append(load_audio(item.path))
            paths.append(item.path)
        except InputError as error:
            errors.append(str(error))
            cli.say(f"error: {error}")
    if not signals:
        raise InputError("no readable input to benchmark")
    return paths, signals, [duration_seconds(s) for s in signals], errors


def run_benchmark(args, import_seconds: float) -> dict:
    from common.device import prepare_device
    from common.environment import collect_environment
    from common.models import ModelPool, default_model_spec, describe, resolve_model_source
    from common import perf
    from common.perf import PerfConfig, PerfOptions, benchmark, cold_start, device_ratios

    source = resolve_model_source(args.model or default_model_spec())
    paths, signals, durations, errors = load_inputs(args)
    choices = [cli.select_device(spec, announce=not args.json) for spec in (args.devices or [args.device])]
    if source.note and not args.json:
        cli.say(f"model: {describe(source)}")
    pool = ModelPool(timestamps=False, quiet=not args.debug)
    options = PerfOptions(warmup=args.warmup, runs=args.runs, check_engines=not args.no_engine_check)
    results, cold, settings = [], {}, {}
    for choice in choices:
        settings[choice.device] = prepare_device(choice.device, exact_fp32=True)
        loaded = pool.get(source, choice.device)
        cold[choice.device] = cold_start(import_seconds, loaded)
        first = True
        for dtype in args.dtype:
            for engine in args.engine:
                for batch_size in args.batch_sizes:
                    config = PerfConfig(choice.device, dtype, engine, batch_size)
                    if not args.json:
                        cli.say(f"measuring {config.label} ...")
                    results.append(benchmark(loaded, signals, durations, config, options, first_call=first))
                    if first:
                        cold[choice.device]["first_call_seconds"] = results[-1].get("first_call_seconds")
                    first = False
    engines_ok = all(r.get("engine_check", {}).get("identical", True) for r in results)
    return {
        "timed": perf.__doc__.strip(),
        "environment": collect_environment([c.device for c in choices], args.command_line),
        "model": {"spec": source.spec, "kind": source.kind, "note": source.note},
        "inputs": [{"path": p, "duration": round(d, 4)} for p, d in zip(paths, durations)],
        "input_errors": errors,
        "options": {"warmup": args.warmup, "runs": args.runs, "dtypes": args.dtype, "engines": args.engine,
                    "batch_sizes": args.batch_sizes},
        "device_settings": settings,
        "cold_start": cold,
        "results": results,
        "ratios": device_ratios(results),
        "engines_identical": engines_ok,
        "ok": engines_ok and not errors,
    }


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv, __file__)
    return cli.run(lambda: perf_command(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
