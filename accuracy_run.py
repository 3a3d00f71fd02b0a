#!/usr/bin/env python3
"""Check that a device transcribes like the CPU: the same model on the target device and on a
reference device, in one process, compared file by file (exact match, WER/CER, word-timestamp
drift, optional ground truth).

Examples:
  python accuracy_run.py --audio sample.wav --output results.json
  python accuracy_run.py --audio clips/ --device npu:0 --dtype bf16 --max-wer 0.02 --min-match 0.9
  python accuracy_run.py --audio dev.jsonl --json          # manifest 'text' gives ground-truth WER
  python accuracy_run.py --audio LibriSpeech/test-clean --limit 0.1 --html report.html   # also kaldi/, *.parquet
  python accuracy_run.py --audio dev.jsonl --device npu:0 --reference-results gpu_pred.jsonl   # NeMo's pred_text
  python accuracy_run.py --model demo --audio demo/clips/manifest.jsonl --device cpu --dtype bf16 --min-match 0
  python accuracy_run.py --model demo --audio demo/clips/ --device cpu --encoder-runtime onnxruntime   # ORT vs torch

Exit status: 0 thresholds met, 1 not met (or a file failed), 2 setup error.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import cli, options  # noqa: E402


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    parser.add_argument("--reference", type=cli.device_spec, default="cpu", help="reference device (always fp32)")
    parser.add_argument("--reference-model", type=options.non_empty, default=None,
                        help="model for the reference device (default: the same as --model)")
    cli.add_dtype_argument(parser, "target precision; fp32 on an NPU also turns conv HF32 off")
    parser.add_argument("--truth-text", default=None,
                        help="ground-truth transcript for a single input (manifests carry their own 'text')")
    parser.add_argument("--reference-text", dest="truth_text", action=cli.DeprecatedOption, new="--truth-text",
                        help=argparse.SUPPRESS)  # the old name, until the next release
    cli.add_encoder_runtime_argument(parser, "the target's encoder; the reference's is always torch's")
    cli.add_decode_graphs_argument(parser)
    cli.add_long_audio_argument(parser)
    cli.add_threshold_arguments(parser)
    parser.add_argument("--warmup", type=options.integer(0), default=1, help="untimed runs per device before timing")
    parser.add_argument("--reference-results", metavar="FILE", type=options.non_empty, default=None,
                        help="reuse the reference transcripts of an earlier accuracy_run.py --output FILE (or an "
                             "inference.py JSON/JSONL made on the reference device with --timestamps word) "
                             "instead of computing them again")
    cli.add_output_arguments(parser)
    cli.add_html_argument(parser)
    cli.add_resume_argument(parser)
    return parser


def accuracy_command(args) -> int:
    from common.errors import SetupError
    from common.files import write_json_atomic, write_text_atomic
    from common.inputs.sources import collect_inputs
    from common.model.loading import ModelPool, default_model_spec, resolve_model_source
    from common.outputs.formats import render_json
    from common.report.tables import accuracy_table

    items = collect_inputs(cli.input_paths(args), cli.input_options(args))
    cli.check_html_target(args, [i.path for i in items])
    if args.truth_text is not None and len(items) != 1:
        raise SetupError(f"--truth-text: applies to one input, got {len(items)}; use a manifest with 'text'")
    target_source = resolve_model_source(args.model or default_model_spec())
    reference_source = resolve_model_source(args.reference_model) if args.reference_model else target_source
    pool = ModelPool(timestamps=True, quiet=not args.debug, loader=args.loader)

    def publish(document: dict) -> None:
        if args.output:
            write_json_atomic(args.output, document)

    document = run_accuracy_check(args, items, target_source, reference_source, pool, publish)
    if document is None:  # a rank other than 0 under torchrun: rank 0 reports for every card
        return 0
    if args.html:
        from common.report.html import accuracy_html

        write_text_atomic(args.html, accuracy_html(document))
    sys.stdout.write(render_json(document) if args.json else accuracy_table(document))
    return 0 if document["accuracy"]["verdict"]["passed"] else 1


def run_accuracy_check(args, items, target_source, reference_source, pool, publish) -> dict:
    from common.engine.precision import check_encoder_runtime
    from common.job.accuracy import AccuracyRun, accuracy_check
    from common.measure.accuracy import AccuracyOptions
    from common.model.loading import describe

    ranks = cli.world()
    target = cli.select_device(args.device, announce=not args.json, dtype=args.dtype, ranks=ranks,
                               threads=args.threads)
    reference = cli.select_device(args.reference, announce=False)
    check_encoder_runtime(args.encoder_runtime, target.device, args.dtype)  # --device auto, now resolved
    if target_source.note and not args.json:
        cli.say(f"model: {describe(target_source)}")
    options = AccuracyOptions(dtype=args.dtype, warmup=args.warmup, min_match=args.min_match,
                              max_wer=args.max_wer, debug=args.debug, long_audio_seconds=args.long_audio_seconds,
                              seed=args.seed, decode_graphs=args.decode_graphs, encoder_runtime=args.encoder_runtime)
    run = AccuracyRun(output=args.output, resume=args.resume, reference_results=args.reference_results,
                      command_line=cli.launch_line(args, ranks), truth_text=args.truth_text,
                      progress=cli.show_progress(args.json), say=cli.say)
    return accuracy_check(target, reference, target_source, reference_source, pool, items, options, run, publish,
                          ranks)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, accuracy_command)


if __name__ == "__main__":
    sys.exit(main())
