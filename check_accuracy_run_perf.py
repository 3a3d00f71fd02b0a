#!/usr/bin/env python3
"""Is this machine ready, and does the model run right and fast on it? `--dry-run` checks the
environment in seconds without loading a model; a full run chains those checks, accuracy
(device vs CPU) and performance (device and CPU) in one process, loading each model once, and
writes a Markdown, an HTML and a JSON report.

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
import time

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import cli, options  # noqa: E402


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_input_arguments(parser)
    cli.add_model_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="only check the environment (no model load)")
    parser.add_argument("--all-cards", action="store_true",
                        help="run the accuracy and performance stages on every visible card of --device's kind in "
                             "turn (ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES), one CPU reference for all, "
                             "a verdict per card")
    cli.add_dtype_argument(parser, "device precision")
    parser.add_argument("--warmup", type=options.integer(0), default=1, help="untimed runs before timing")
    parser.add_argument("--runs", type=options.integer(1), default=3, help="timed runs per device")
    cli.add_long_audio_argument(parser)
    cli.add_threshold_arguments(parser)
    parser.add_argument("--report-dir", type=options.non_empty, default="reports",
                        help="where report.md, report.html and report.json are written")
    cli.add_output_arguments(parser)
    cli.add_resume_argument(parser)
    return parser


def dry_run(args, model_spec: str) -> int:
    from common.checks.environment import checks_document, run_checks
    from common.files import write_json_atomic
    from common.outputs.formats import render_json
    from common.report.tables import checks_table

    document = checks_document(run_checks(model_spec, args.audio + args.paths, args.device, cli.input_options(args)))
    if args.output:
        write_json_atomic(args.output, document)
    sys.stdout.write(render_json(document) if args.json else checks_table(document))
    return 0 if document["passed"] else 1


def full_run(args, model_spec: str) -> int:
    from common.errors import SetupError
    from common.files import write_json_atomic, write_text_atomic
    from common.job.smoke import SmokeOptions, run_smoke, smoke_passed
    from common.model.loading import describe, import_nemo_asr, resolve_model_source
    from common.outputs.formats import render_json
    from common.report.html import smoke_html
    from common.report.tables import checks_table, smoke_markdown

    paths = cli.input_paths(args)
    if args.all_cards and args.device.split(":")[0] == "cpu":
        raise SetupError("--all-cards checks the NPU or CUDA cards against the CPU: give --device npu, cuda or auto")
    start = time.perf_counter()
    import_nemo_asr(quiet=not args.debug)
    import_seconds = time.perf_counter() - start
    options = SmokeOptions(model=model_spec, audio=tuple(paths), device=args.device, dtype=args.dtype,
                           warmup=args.warmup, runs=args.runs, min_match=args.min_match, max_wer=args.max_wer,
                           quiet=not args.debug, debug=args.debug, loader=args.loader, report_dir=args.report_dir,
                           resume=args.resume, long_audio_seconds=args.long_audio_seconds,
                           inputs=cli.input_options(args), threads=args.threads, all_cards=args.all_cards)
    os.makedirs(args.report_dir, exist_ok=True)
    if not args.json:
        cli.say(f"checks: model {describe(resolve_model_source(model_spec))}, device {args.device} ...")
    document = run_smoke(options, args.command_line, import_seconds, say=(lambda _: None) if args.json else cli.say)
    if not args.json and document["stages"]["checks"] == "failed":
        sys.stdout.write(checks_table(document["checks"]))
    markdown = smoke_markdown(document)
    report_dir = args.report_dir
    write_json_atomic(os.path.join(report_dir, "report.json"), document)
    write_text_atomic(os.path.join(report_dir, "report.md"), markdown)
    write_text_atomic(os.path.join(report_dir, "report.html"), smoke_html(document))
    if args.output:
        write_json_atomic(args.output, document)
    sys.stdout.write(render_json(document) if args.json else markdown)
    if not args.json:
        cli.say(f"reports: {os.path.join(report_dir, 'report.md')}, {os.path.join(report_dir, 'report.html')}, "
                f"{os.path.join(report_dir, 'report.json')}")
    return 0 if smoke_passed(document) else 1


def check_command(args) -> int:
    from common.model.loading import default_model_spec

    model_spec = args.model or default_model_spec()
    return dry_run(args, model_spec) if args.dry_run else full_run(args, model_spec)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, check_command)


if __name__ == "__main__":
    sys.exit(main())
