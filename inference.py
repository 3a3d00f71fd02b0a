#!/usr/bin/env python3
"""Transcribe speech with parakeet-tdt-0.6b-v2 (or any NeMo FastConformer-TDT/RNNT model) on an
Ascend NPU, a CUDA GPU or the CPU.

Examples:
  python inference.py --audio sample.wav
  python inference.py --model demo --audio examples/demo.wav --timestamps word
  cat examples/demo.wav | python inference.py --model demo -
  python inference.py --model random:tiny --audio examples/ --timestamps word --json
  python inference.py --audio talk.wav --output-format srt --output talk.srt
  python inference.py --audio test.parquet --output-format nemo-manifest --output test_pred.jsonl
"""

from __future__ import annotations

import os
import sys

# A torch_npu that cannot load (no CANN) must not break `import torch`: we import it ourselves.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import choices, cli, options  # noqa: E402  (light: no torch/NeMo import)


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    decoding = cli.group(parser, "decoding")
    decoding.add_argument("--engine", type=cli.engine_name, choices=choices.ENGINES, default=choices.DEFAULT_ENGINE,
                          help="batched: inputs sorted by length and batched by --batch-seconds, run through "
                               "preprocessor, encoder and decoding directly; nemo: model.transcribe() in input "
                               "order, --batch-size files at a time")
    decoding.add_argument("--batch-size", type=options.integer(1), default=choices.BATCH_SIZE,
                          help="most files per model call")
    decoding.add_argument("--batch-seconds", type=options.positive, default=choices.BATCH_SECONDS,
                          help="batched engine: most padded audio seconds per model call")
    cli.add_dtype_argument(parser, "encoder/decoder precision")
    cli.add_encoder_runtime_argument(parser)
    decoding.add_argument("--decoder-device", type=cli.device_spec, default=None, metavar="DEVICE",
                          help="run the TDT decoder and joint here (e.g. cpu) while the encoder runs on --device; "
                               "batched engine only (default: same as --device)")
    cli.add_decode_graphs_argument(parser)
    cli.add_long_audio_argument(parser)
    output = cli.group(parser, "output")
    output.add_argument("--timestamps", type=options.choice(choices.TIMESTAMPS), choices=choices.TIMESTAMPS,
                        default="none", help="timestamps to report (seconds), in every output format: text "
                                             "gives an indented '  word [0.32-0.56] hello' line each; srt/vtt "
                                             "turn on segments")
    output.add_argument("--output-format", type=options.choice(choices.OUTPUT_FORMATS),
                        choices=choices.OUTPUT_FORMATS, default="text",
                        help="output format (--json is short for --output-format json); jsonl streams one "
                             "line per file in input order, each once every earlier file is done; "
                             "nemo-manifest: each input's manifest line with pred_text added, as NeMo's "
                             "transcribe_speech.py writes it (the test set's id as `id`; an all-upper-case "
                             "truth lower-cased as `text`, as NeMo's speech_to_text_eval.py compares it)")
    output.add_argument("--output-dir", metavar="DIR", type=options.non_empty, default=None,
                        help="write one output file per input into DIR (needed for srt/vtt of several inputs)")
    cli.add_output_arguments(parser)
    cli.add_resume_argument(parser)
    return parser


def transcribe_command(args) -> int:
    """One library call: the job layer's transcribe_request, as the API's transcribe() makes it."""
    from common.job.inference import InferenceRequest, OutputPlan, transcribe_request

    output_format = "json" if args.json else args.output_format
    ranks = cli.world()
    request = InferenceRequest(tuple(cli.input_paths(args)), transcribe_options(args, output_format),
                               OutputPlan(output_format, args.output, args.output_dir, args.resume,
                                          cli.launch_line(args, ranks)),
                               args.model, cli.input_options(args), args.loader, args.decoder_device)
    announce = output_format not in ("json", "jsonl")  # stderr stays quiet beside machine-readable output
    records = transcribe_request(request, lambda: cli.select_device(args.device, announce=announce, dtype=args.dtype,
                                                                    ranks=ranks, threads=args.threads),
                                 say=cli.say, world=ranks, quiet=not args.debug)
    if records is None:  # a rank other than 0: its share is in its stream, rank 0 publishes
        return 0
    failed = sum(not r.ok for r in records)
    if failed and len(records) > 1:
        cli.say(f"{failed} of {len(records)} input(s) failed")
    return 1 if failed else 0


def transcribe_options(args, output_format: str):
    from common.engine.transcriber import TranscribeOptions
    from common.job.inference import timestamp_kinds

    return TranscribeOptions(batch_size=args.batch_size, timestamp_kinds=timestamp_kinds(args.timestamps, output_format),
                             dtype=args.dtype, engine=args.engine,
                             batch_seconds=args.batch_seconds if args.engine == "batched" else None,
                             long_audio_seconds=args.long_audio_seconds, decode_graphs=args.decode_graphs,
                             encoder_runtime=args.encoder_runtime, debug=args.debug)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, transcribe_command)


if __name__ == "__main__":
    sys.exit(main())
