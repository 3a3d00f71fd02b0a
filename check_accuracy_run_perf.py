#!/usr/bin/env python3
"""Is this machine ready, and does the model run right and fast on it? `--dry-run` checks the
environment in seconds without loading a model; a full run chains those checks, accuracy
(device vs CPU) and performance (device and CPU, timed as inference.py runs by default) in one
process, loading each model once, and writes a Markdown, an HTML and a JSON report. Every
warning and failure is listed with its fix.

Examples:
  python check_accuracy_run_perf.py --dry-run
  python check_accuracy_run_perf.py --audio sample.wav
  python check_accuracy_run_perf.py --model demo --audio examples/demo.wav
  python check_accuracy_run_perf.py --model random:parakeet --audio examples/sample.wav
  python check_accuracy_run_perf.py --audio sample.wav --device npu:0 --report-dir reports/
  python check_accuracy_run_perf.py --audio clips/ --device npu --all-cards   # every card of the host

Exit status: 0 when every stage passed, 1 when a check, the accuracy thresholds or the
performance run failed, 2 on a setup error.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import choices, cli, options  # noqa: E402  (light: no torch/NeMo import)


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser, seed_also="the accuracy stage's bootstrap")
    cli.add_model_arguments(parser)
    cli.group(parser, "model and device").add_argument(
        "--all-cards", action="store_true",
        help="run the accuracy and performance stages on every visible card of --device's kind in turn "
             "(ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES), one CPU reference for all, a verdict per card")
    cli.add_dtype_argument(parser, "device precision")
    cli.group(parser, "decoding").add_argument(
        "--engine", type=cli.engine_name, choices=choices.ENGINES, default=choices.DEFAULT_ENGINE,
        help=f"the engine the performance stage times, with inference.py's batching (at most {choices.BATCH_SIZE} "
             f"files and {choices.BATCH_SECONDS:g} s of padded audio a batch): batched, as inference.py runs by "
             "default; nemo: model.transcribe(), as the original adaptation")
    cli.add_long_audio_argument(parser)
    cli.add_threshold_arguments(parser)
    control = cli.group(parser, "run control")
    control.add_argument("--dry-run", action="store_true", help="only check the environment (no model load)")
    control.add_argument("--warmup", type=options.integer(0), default=choices.WARMUP, help="untimed runs before timing")
    control.add_argument("--runs", type=options.integer(1), default=3, help="timed runs per device")
    cli.group(parser, "output").add_argument("--report-dir", type=options.non_empty, default="reports",
                                             help="where report.md, report.html and report.json are written")
    cli.add_output_arguments(parser, stdout_too=True)
    cli.add_resume_argument(parser, where="in --report-dir")
    return parser


def check_command(args) -> int:
    from common.api import check_machine

    paths = args.audio + args.paths if args.dry_run else cli.input_paths(args)  # a full run needs audio
    result = check_machine(paths, args.model, args.device, args.dry_run, dtype=args.dtype,
                           engine=args.engine, warmup=args.warmup, runs=args.runs, min_match=args.min_match,
                           max_wer=args.max_wer, report_dir=None if args.dry_run else args.report_dir,
                           resume=args.resume, all_cards=args.all_cards, long_audio_seconds=args.long_audio_seconds,
                           loader=args.loader, threads=args.threads, inputs=cli.input_options(args),
                           command_line=args.command_line, progress=not args.json, debug=args.debug)
    (write_dry_run if args.dry_run else write_reports)(args, result.document)
    return 0 if result.passed else 1


def write_dry_run(args, document: dict) -> None:
    from common.files import write_json_atomic
    from common.outputs.formats import render_json
    from common.report.tables import checks_table

    if args.output:
        write_json_atomic(args.output, document)
    sys.stdout.write(render_json(document) if args.json else checks_table(document))


def write_reports(args, document: dict) -> None:
    """report.json, report.md and report.html in --report-dir; the Markdown (or the JSON) on stdout."""
    from common.files import write_json_atomic, write_text_atomic
    from common.outputs.formats import render_json
    from common.report.html import smoke_html
    from common.report.tables import checks_table, smoke_markdown

    if not args.json and document["stages"]["checks"] == "failed":
        sys.stdout.write(checks_table(document["checks"]))
    markdown = smoke_markdown(document)
    reports = {name: os.path.join(args.report_dir, name) for name in ("report.md", "report.html", "report.json")}
    write_json_atomic(reports["report.json"], document)
    write_text_atomic(reports["report.md"], markdown)
    write_text_atomic(reports["report.html"], smoke_html(document))
    if args.output:
        write_json_atomic(args.output, document)
    sys.stdout.write(render_json(document) if args.json else markdown)
    if not args.json:
        cli.say(f"reports: {', '.join(reports.values())}")


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, check_command)


if __name__ == "__main__":
    sys.exit(main())
