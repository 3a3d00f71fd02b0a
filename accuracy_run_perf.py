#!/usr/bin/env python3
"""Benchmark transcription latency and RTFx on one or more devices, the way ASR benchmarks do:
cold start reported apart, warm-up runs, then timed runs with the device synchronized before
every clock read, statistics, a stage breakdown and peak memory.

A run = every input transcribed once from in-memory 16 kHz arrays, batched as inference.py
batches by default (the batched engine; inputs sorted longest first, at most --batch-sizes files
and --batch-seconds of padded audio a batch); reading and resampling the files is not timed.
RTFx = audio seconds / median run seconds. The table names the engine and batching of each row.

Examples:
  python accuracy_run_perf.py --audio sample.wav --warmup 1 --runs 5
  python accuracy_run_perf.py --model demo --audio examples/demo.wav --devices cpu
  python accuracy_run_perf.py --audio clips/ --devices npu:0,cpu --batch-sizes 1,4,16 --output perf.json
  python accuracy_run_perf.py --audio sample.wav --engine batched,nemo --dtype fp32,bf16 --csv perf.csv
  python accuracy_run_perf.py --audio sample.wav --encoder-runtime torch,onnxruntime --dtype fp32,int8
  python accuracy_run_perf.py --audio data/test --limit 32 --html perf.html
  python accuracy_run_perf.py --audio clips/ --device npu:0 --decode-graphs off,on --decoder-device same,cpu
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import choices, cli, options  # noqa: E402  (light: no torch/NeMo import)


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    cli.group(parser, "model and device").add_argument(
        "--devices", type=options.comma_list(cli.device_spec), default=None,
        help="several devices side by side, e.g. npu:0,cpu (overrides --device)")
    decoding = cli.group(parser, "decoding")
    # String defaults go through `type` too (argparse), so they come out as lists.
    decoding.add_argument("--engine", type=options.comma_list(cli.engine_name), default=choices.DEFAULT_ENGINE,
                          help="batched: preprocessor, encoder and decoding on tensors, as inference.py runs by "
                               "default; nemo: model.transcribe() as the original adaptation (comma list)")
    decoding.add_argument("--batch-sizes", type=options.comma_list(options.integer(1)), default=str(choices.BATCH_SIZE),
                          help="most files a batch, as inference.py --batch-size (comma list sweeps them, e.g. "
                               "1,4,16); the batched engine also keeps a batch within --batch-seconds of padded "
                               "audio. Inputs run longest first; a run transcribes every input once, so with one "
                               "input a run is that file's latency")
    decoding.add_argument("--batch-seconds", type=options.positive, default=choices.BATCH_SECONDS,
                          help="batched engine: most padded audio seconds a batch, as inference.py --batch-seconds")
    decoding.add_argument("--dtype", type=options.comma_list(options.choice(choices.DTYPES)),
                          default=choices.DEFAULT_DTYPE,
                          help=f"comma list of {','.join(choices.DTYPES)} (default: %(default)s). {cli.DTYPE_HELP}")
    decoding.add_argument("--decoder-device", type=options.comma_list(cli.decoder_device_spec), default=None,
                          metavar="DEVICE", help="run the TDT decoder and joint here (e.g. cpu) while the encoder "
                          "runs on the device; batched engine only (default: same device). A comma list sweeps "
                          "placements side by side, 'same' being the device itself: same,cpu")
    decoding.add_argument("--decode-graphs", type=options.comma_list(options.choice(choices.GRAPH_MODES)),
                          default=choices.DEFAULT_GRAPH_MODE,
                          help=cli.GRAPHS_HELP + ". A comma list sweeps them side by side: off,on")
    decoding.add_argument("--encoder-runtime", type=options.comma_list(options.choice(choices.ENCODER_RUNTIMES)),
                          default=choices.DEFAULT_ENCODER_RUNTIME,
                          help="torch; onnxruntime: the encoder in ONNX Runtime (CPU fp32 configurations only; "
                               "needs requirements-onnx.txt). A comma list sweeps them side by side: torch,onnxruntime")
    cli.add_long_audio_argument(parser)
    control = cli.group(parser, "run control")
    control.add_argument("--warmup", type=options.integer(0), default=choices.WARMUP, help="untimed runs per configuration")
    control.add_argument("--runs", type=options.integer(1), default=choices.RUNS,
                         help="timed runs per configuration: the work, nothing else inside")
    control.add_argument("--stage-runs", type=options.integer(0), default=1,
                         help="separate runs per configuration, every stage synchronized at both ends, for "
                              "the features/encoder/decoding breakdown (0: none)")
    control.add_argument("--no-engine-check", action="store_true",
                         help="skip running the other engine once to compare transcripts")
    control.add_argument("--baseline-throughput", type=options.positive, default=None, metavar="AUDIO_S_PER_S",
                         help="under torchrun: one rank's throughput (audio seconds per second) to compute scaling "
                              "efficiency against, instead of timing rank 0 alone on the whole set")
    cli.group(parser, "output").add_argument("--csv", metavar="FILE", type=options.non_empty, default=None,
                                             help="also write one CSV row per configuration")
    cli.add_output_arguments(parser, stdout_too=True)
    cli.add_html_argument(parser)
    return parser


def perf_command(args) -> int:
    from common.api import benchmark
    from common.files import write_json_atomic, write_text_atomic
    from common.outputs.formats import render_json
    from common.report.tables import perf_csv, perf_table

    paths = cli.input_paths(args)
    cli.check_output_targets_of(args, paths)
    result = benchmark(paths, args.model, devices=args.devices or [args.device], dtypes=args.dtype,
                       engines=args.engine, batch_sizes=args.batch_sizes, warmup=args.warmup, runs=args.runs,
                       encoder_runtimes=args.encoder_runtime, batch_seconds=args.batch_seconds,
                       decode_graphs=args.decode_graphs, decoder_devices=args.decoder_device or [],
                       stage_runs=args.stage_runs, check_engines=not args.no_engine_check,
                       long_audio_seconds=args.long_audio_seconds, loader=args.loader, threads=args.threads,
                       inputs=cli.input_options(args), baseline_throughput=args.baseline_throughput,
                       command_line=cli.launch_line(args, cli.world()), progress=not args.json, debug=args.debug)
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports for every card
        return 0
    document = result.document
    for error in document["input_errors"]:
        cli.say(f"error: {error}")
    if args.output:
        write_json_atomic(args.output, document)
    if args.csv:
        write_text_atomic(args.csv, perf_csv(document))
    if args.html:
        from common.report.html import perf_html

        write_text_atomic(args.html, perf_html(document))
    sys.stdout.write(render_json(document) if args.json else perf_table(document) + ranks_lines(document))
    return 0 if result.ok else 1


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


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, perf_command)


if __name__ == "__main__":
    sys.exit(main())
