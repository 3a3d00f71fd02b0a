#!/usr/bin/env python3
"""Benchmark transcription latency and RTFx on one or more devices, the way ASR benchmarks do:
cold start reported apart, warm-up runs, then timed runs with the device synchronized before
every clock read, statistics, a stage breakdown and peak memory.

A run = every input transcribed once from in-memory 16 kHz arrays (inputs sorted longest first,
cut into batches); reading and resampling the files is not timed. RTFx = audio seconds / median
run seconds.

Examples:
  python accuracy_run_perf.py --audio sample.wav --warmup 1 --runs 5
  python accuracy_run_perf.py --model demo --audio examples/demo.wav --devices cpu
  python accuracy_run_perf.py --audio clips/ --devices npu:0,cpu --batch-sizes 1,4,16 --output perf.json
  python accuracy_run_perf.py --audio sample.wav --engine nemo,batched --dtype fp32,bf16 --csv perf.csv
  python accuracy_run_perf.py --audio sample.wav --engine batched --encoder-runtime torch,onnxruntime --dtype fp32,int8
  python accuracy_run_perf.py --audio data/test --limit 32 --html perf.html
  python accuracy_run_perf.py --audio clips/ --device npu:0 --engine batched --decode-graphs off,on --decoder-device same,cpu
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import cli, options  # noqa: E402
from common.choices import DTYPES, ENCODER_RUNTIMES  # noqa: E402


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    parser.add_argument("--devices", type=options.comma_list(cli.device_spec), default=None,
                        help="several devices side by side, e.g. npu:0,cpu (overrides --device)")
    parser.add_argument("--dtype", type=options.comma_list(options.choice(DTYPES)), default="fp32",
                        help=f"comma list of {','.join(DTYPES)} (default: %(default)s). {cli.DTYPE_HELP}")
    # String defaults go through `type` too (argparse), so they come out as lists and --help shows "nemo".
    parser.add_argument("--engine", type=options.comma_list(cli.engine_name), default="nemo",
                        help="nemo: model.transcribe() as the original adaptation; batched: preprocessor, "
                             "encoder and decoding on tensors (comma list)")
    parser.add_argument("--decoder-device", type=options.comma_list(cli.decoder_device_spec), default=None,
                        metavar="DEVICE", help="run the TDT decoder and joint here (e.g. cpu) while the encoder "
                        "runs on the device; batched engine only (default: same device). A comma list sweeps "
                        "placements side by side, 'same' being the device itself: same,cpu")
    parser.add_argument("--decode-graphs", type=options.comma_list(options.choice(cli.GRAPH_MODES)), default="off",
                        help=cli.GRAPHS_HELP + ". A comma list sweeps them side by side: off,on")
    parser.add_argument("--encoder-runtime", type=options.comma_list(options.choice(ENCODER_RUNTIMES)),
                        default="torch",
                        help="torch; onnxruntime: the encoder in ONNX Runtime (CPU fp32 configurations only; "
                             "needs requirements-onnx.txt). A comma list sweeps them side by side: torch,onnxruntime")
    cli.add_long_audio_argument(parser)
    parser.add_argument("--batch-sizes", type=options.comma_list(options.integer(1)), default="1",
                        help="batch size sweep, e.g. 1,4,16")
    parser.add_argument("--warmup", type=options.integer(0), default=1, help="untimed runs per configuration")
    parser.add_argument("--runs", type=options.integer(1), default=5,
                        help="timed runs per configuration: the work, nothing else inside")
    parser.add_argument("--stage-runs", type=options.integer(0), default=1,
                        help="separate runs per configuration, every stage synchronized at both ends, for "
                             "the features/encoder/decoding breakdown (0: none)")
    parser.add_argument("--no-engine-check", action="store_true",
                        help="skip running the other engine once to compare transcripts")
    parser.add_argument("--baseline-throughput", type=options.positive, default=None, metavar="AUDIO_S_PER_S",
                        help="under torchrun: one rank's throughput (audio seconds per second) to compute scaling "
                             "efficiency against, instead of timing rank 0 alone on the whole set")
    parser.add_argument("--csv", metavar="FILE", type=options.non_empty, default=None, help="also write one CSV row per configuration")
    cli.add_output_arguments(parser)
    cli.add_html_argument(parser)
    return parser


def perf_command(args) -> int:
    from common.files import write_json_atomic, write_text_atomic
    from common.outputs.formats import render_json
    from common.report.tables import perf_csv, perf_table

    cli.check_html_target(args, cli.input_paths(args))
    start = time.perf_counter()
    from common.model.loading import import_nemo_asr

    import_nemo_asr(quiet=not args.debug)
    import_seconds = time.perf_counter() - start
    document = run_benchmark(args, import_seconds)
    if document is None:  # a rank other than 0 under torchrun: rank 0 reports for every card
        return 0
    if args.output:
        write_json_atomic(args.output, document)
    if args.csv:
        write_text_atomic(args.csv, perf_csv(document))
    if args.html:
        from common.report.html import perf_html

        write_text_atomic(args.html, perf_html(document))
    sys.stdout.write(render_json(document) if args.json else perf_table(document) + ranks_lines(document))
    return 0 if document["ok"] else 1


def run_benchmark(args, import_seconds: float) -> dict:
    from common.measure.perf import PerfOptions, PerfSweep, load_signals, run_perf
    from common.model.loading import ModelPool, default_model_spec, describe, resolve_model_source

    source = resolve_model_source(args.model or default_model_spec())
    ranks = cli.world()
    if ranks.ranked:
        return run_ranked_benchmark(args, import_seconds, source, ranks)
    inputs = load_signals(cli.input_paths(args), cli.input_options(args))
    for error in inputs.errors:
        cli.say(f"error: {error}")
    choices = [cli.select_device(spec, announce=not args.json, dtype=args.dtype, ranks=ranks, threads=args.threads)
               for spec in (args.devices or [args.device])]
    if source.note and not args.json:
        cli.say(f"model: {describe(source)}")
    placements = args.decoder_device or []
    sweep = PerfSweep(dtypes=tuple(args.dtype), engines=tuple(args.engine), batch_sizes=tuple(args.batch_sizes),
                      decode_graphs=tuple(args.decode_graphs), encoder_runtimes=tuple(args.encoder_runtime),
                      decoder_devices=tuple(_placement(p) for p in placements) if len(placements) > 1 else (None,))
    # one placement elsewhere: the model is loaded that way, as before the sweep existed
    one = _placement(placements[0]) if len(placements) == 1 else None
    decoder_device = one if one not in (None, "same") else None
    # with the decoder elsewhere the nemo engine cannot run, so there is no second engine to compare
    options = PerfOptions(warmup=args.warmup, runs=args.runs, stage_runs=args.stage_runs,
                          check_engines=not args.no_engine_check and decoder_device is None,
                          long_audio_seconds=args.long_audio_seconds)
    progress = None if args.json else (lambda config: cli.say(f"measuring {config.label} ..."))
    pool = ModelPool(timestamps=False, quiet=not args.debug, loader=args.loader, decoder_device=decoder_device)
    return run_perf(choices, source, pool, inputs, sweep, options, import_seconds, args.command_line, progress)


def _placement(spec: str) -> str:
    """A --decoder-device entry: 'same', or the device it resolves to."""
    return spec if spec == "same" else cli.select_device(spec, announce=False).device


def ranks_lines(document: dict) -> str:
    """Under torchrun: per-rank RTFx and the host's aggregate (the table above is rank 0's share)."""
    if "aggregate" not in document:
        return ""
    agg = document["aggregate"]
    lines = ["", "the table above is rank 0's share; every rank (each on its own share):"]
    lines += [f"  rank {r['rank']} {r['device']}: {r['audio_seconds']:.1f} s of audio, RTFx {r['rtfx']:.2f}, "
              f"{r['threads']} CPU thread(s)" for r in document["ranks"]]
    lines.append(f"aggregate ({agg['ranks']} ranks, {agg['config']}): {agg['throughput']:.2f} audio s per wall s; "
                 f"one rank {agg['one_rank']['throughput']:.2f} ({agg['one_rank']['measured']}); speedup "
                 f"{agg['speedup']:.2f}x, scaling efficiency {agg['scaling_efficiency']:.0%}")
    return "\n".join(lines) + "\n"


def run_ranked_benchmark(args, import_seconds: float, source, ranks):
    from common.errors import SetupError
    from common.job.perf_ranks import run_ranked_perf
    from common.measure.perf import PerfOptions, PerfSweep
    from common.model.loading import ModelPool

    if args.devices:
        raise SetupError("--devices: under torchrun every rank benchmarks its own card; give --device")
    choice = cli.select_device(args.device, announce=not args.json, dtype=args.dtype, ranks=ranks,
                               threads=args.threads)
    if args.decoder_device and len(args.decoder_device) > 1:
        raise SetupError("--decoder-device: under torchrun give one placement, not a list")
    sweep = PerfSweep(dtypes=tuple(args.dtype), engines=tuple(args.engine), batch_sizes=tuple(args.batch_sizes),
                      decode_graphs=tuple(args.decode_graphs), encoder_runtimes=tuple(args.encoder_runtime))
    placement = _placement(args.decoder_device[0]) if args.decoder_device else "same"
    decoder_device = None if placement == "same" else placement
    options = PerfOptions(warmup=args.warmup, runs=args.runs, stage_runs=args.stage_runs,
                          check_engines=not args.no_engine_check and decoder_device is None,
                          long_audio_seconds=args.long_audio_seconds)
    pool = ModelPool(timestamps=False, quiet=not args.debug, loader=args.loader, decoder_device=decoder_device)
    say = (lambda m: None) if args.json else cli.say
    return run_ranked_perf(ranks, choice, source, pool, cli.input_paths(args), sweep, options, import_seconds,
                           cli.launch_line(args, ranks), args.baseline_throughput, say)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, perf_command)


if __name__ == "__main__":
    sys.exit(main())
