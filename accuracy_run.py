#!/usr/bin/env python3
"""Check that a device transcribes like the CPU: the same model on the target device and on a
reference device, in one process, compared file by file (exact match, WER/CER, word-timestamp
drift, optional ground truth); or, with --reference none, measure the model's WER against a
test set's ground truth in one pass.

Examples:
  python accuracy_run.py --audio sample.wav --output results.json
  python accuracy_run.py --audio clips/ --device npu:0 --dtype bf16 --max-wer 0.02 --min-match 0.9
  python accuracy_run.py --audio dev.jsonl --json          # manifest 'text' gives ground-truth WER
  python accuracy_run.py --audio LibriSpeech/test-clean --reference none --max-truth-wer 0.05   # one pass, truth only
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

from common import choices, cli, options  # noqa: E402
from common.choices import DEFAULT_REFERENCE, NO_REFERENCE  # noqa: E402


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser, seed_also="the bootstrap's resampling")
    cli.add_model_arguments(parser)
    device = cli.group(parser, "model and device")
    device.add_argument("--reference", type=reference_spec, default=DEFAULT_REFERENCE, metavar=f"DEVICE|{NO_REFERENCE}",
                        help=f"reference device (always fp32), or {NO_REFERENCE}: no reference, the device against "
                             "the ground truth only (the model runs once)")
    device.add_argument("--reference-model", type=options.non_empty, default=None,
                        help="model for the reference device (default: the same as --model)")
    cli.add_dtype_argument(parser, "target precision; fp32 on an NPU also turns conv HF32 off")
    inputs = cli.group(parser, "input")
    inputs.add_argument("--truth-text", default=None,
                        help="ground-truth transcript for a single input (manifests carry their own 'text')")
    inputs.add_argument("--reference-text", dest="truth_text", action=cli.DeprecatedOption, new="--truth-text",
                        help=argparse.SUPPRESS)  # the old name, until the next release
    inputs.add_argument("--reference-results", metavar="FILE", type=options.non_empty, default=None,
                        help="reuse the reference transcripts of an earlier accuracy_run.py --output FILE (or an "
                             "inference.py JSON/JSONL made on the reference device with --timestamps word, or a "
                             "NeMo result manifest) instead of computing them again")
    cli.add_encoder_runtime_argument(parser, "the target's encoder; the reference's is always torch's")
    cli.add_decode_graphs_argument(parser)
    cli.add_long_audio_argument(parser)
    cli.add_threshold_arguments(parser)
    cli.group(parser, "thresholds").add_argument(
        "--max-truth-wer", type=options.non_negative, default=None,
        help="maximum WER of device vs truth (normalized): above it the exit status is 1; with a reference, "
             "both verdicts must pass (default: the truth WER is reported, not judged)")
    cli.group(parser, "run control").add_argument("--warmup", type=options.integer(0), default=choices.WARMUP,
                                                  help="untimed runs per device before timing")
    cli.add_output_arguments(parser, stdout_too=True)
    cli.add_html_argument(parser)
    cli.add_resume_argument(parser, where="beside --output")
    return parser


def reference_spec(text: str):
    """--reference: a device, or none (None: no reference side)."""
    if text == NO_REFERENCE:
        return None
    try:
        return cli.device_spec(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}, or {NO_REFERENCE}") from None


def accuracy_command(args) -> int:
    from common.job.accuracy import run_accuracy
    from common.outputs.formats import render_json
    from common.report.tables import accuracy_table

    ranks = cli.world()

    def select_device(spec: str, target: bool):
        if target:
            return cli.select_device(spec, announce=not args.json, dtype=args.dtype, ranks=ranks, threads=args.threads)
        return cli.select_device(spec, announce=False)

    document = run_accuracy(accuracy_request(args, ranks), select_device, ranks, cli.say,
                            progress=cli.show_progress(args.json), announce=not args.json)
    if document is None:  # a rank other than 0 under torchrun: rank 0 reports for every card
        return 0
    sys.stdout.write(render_json(document) if args.json else accuracy_table(document))
    return 0 if document["accuracy"]["verdict"]["passed"] else 1


def accuracy_request(args, ranks):
    """The options as the job's request."""
    from common.job.accuracy import AccuracyRequest
    from common.measure.accuracy import AccuracyOptions

    measure = AccuracyOptions(dtype=args.dtype, warmup=args.warmup, min_match=args.min_match, max_wer=args.max_wer,
                              max_truth_wer=args.max_truth_wer, debug=args.debug,
                              long_audio_seconds=args.long_audio_seconds, seed=args.seed,
                              decode_graphs=args.decode_graphs, encoder_runtime=args.encoder_runtime)
    return AccuracyRequest(tuple(cli.input_paths(args)), args.model, args.device, args.reference, args.reference_model,
                           args.reference_results, args.truth_text, cli.input_options(args), measure, args.loader,
                           quiet=not args.debug, output=args.output, html=args.html, resume=args.resume,
                           command_line=cli.launch_line(args, ranks))


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, accuracy_command)


if __name__ == "__main__":
    sys.exit(main())
