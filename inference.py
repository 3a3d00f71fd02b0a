#!/usr/bin/env python3
"""Transcribe speech with parakeet-tdt-0.6b-v2 (or any NeMo FastConformer-TDT/RNNT model) on an
Ascend NPU, a CUDA GPU or the CPU.

Examples:
  python inference.py --audio sample.wav
  python inference.py --model random:tiny --audio examples/ --timestamps word --json
  python inference.py --audio talk.wav --output-format srt --output talk.srt
"""

from __future__ import annotations

import os
import sys

# A torch_npu that cannot load (no CANN) must not break `import torch`: we import it ourselves.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import cli  # noqa: E402  (light: no torch/NeMo import)

TIMESTAMP_CHOICES = ("none", "word", "segment", "char", "all")


def build_parser():
    parser = cli.new_parser(__doc__.split("\n\n")[0], epilog="\n".join(__doc__.split("\n\n")[1:]))
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=4, help="files per model call")
    parser.add_argument("--timestamps", choices=TIMESTAMP_CHOICES, default="none",
                        help="timestamps to report (seconds); srt/vtt turn on segments")
    parser.add_argument("--output-format", choices=("text", "json", "srt", "vtt"), default="text",
                        help="output format (--json is short for --output-format json)")
    parser.add_argument("--output-dir", metavar="DIR", default=None,
                        help="write one output file per input into DIR (needed for srt/vtt of several inputs)")
    cli.add_output_arguments(parser)
    return parser


def timestamp_kinds(choice: str, output_format: str) -> tuple[str, ...]:
    from common.transcriber import TIMESTAMP_KINDS

    kinds = TIMESTAMP_KINDS if choice == "all" else () if choice == "none" else (choice,)
    if output_format in ("srt", "vtt"):
        kinds = tuple(dict.fromkeys(kinds + ("segment",)))
    return kinds


def transcribe_command(args) -> int:
    from common.errors import SetupError
    from common.inputs import collect_inputs
    from common.models import default_model_spec, resolve_model_source
    from common.output import inference_document, write_outputs

    output_format = "json" if args.json else args.output_format
    if args.batch_size < 1:
        raise SetupError(f"--batch-size {args.batch_size}: must be at least 1")
    items = collect_inputs(cli.input_paths(args))
    if output_format in ("srt", "vtt") and len(items) > 1 and not args.output_dir:
        raise SetupError(f"--output-format {output_format}: {len(items)} inputs need --output-dir DIR")
    source = resolve_model_source(args.model or default_model_spec())
    results, loaded, device = run_inference(args, items, source, timestamp_kinds(args.timestamps, output_format))
    for result in results:
        if not result.ok:
            cli.say(f"error: {result.error}")
    document = inference_document(results, source, loaded, device)
    write_outputs(document, results, output_format, args.output, args.output_dir)
    return 0 if all(r.ok for r in results) else 1


def run_inference(args, items, source, kinds):
    """Load the model (unless no input is usable) and transcribe every input."""
    from common.audio import check_audio_header
    from common.device import device_name, prepare_device
    from common.errors import ToolkitError
    from common.models import describe, load_model
    from common.transcriber import FileResult, TranscribeOptions, transcribe_inputs

    for item in items:
        if item.error is None:
            try:
                check_audio_header(item.path)
            except ToolkitError as error:
                item.error = str(error)
    choice = cli.select_device(args.device, announce=not args.json)
    if all(item.error for item in items):
        results = [FileResult(item.path, error=item.error, reference_text=item.text) for item in items]
        return results, None, {"device": choice.device, "reason": choice.reason}
    prepare_device(choice.device)
    loaded = load_model(source.spec, choice.device, timestamps=bool(kinds), quiet=not args.debug, source=source)
    if source.note and not args.json:
        cli.say(f"model: {describe(source)}")
    options = TranscribeOptions(batch_size=args.batch_size, timestamp_kinds=kinds, debug=args.debug)
    results = list(transcribe_inputs(loaded, items, options, progress=cli.show_progress(args.json) and len(items) > 1))
    device = {"device": choice.device, "name": device_name(choice.device), "reason": choice.reason}
    return results, loaded, device


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv, __file__)
    return cli.run(lambda: transcribe_command(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
