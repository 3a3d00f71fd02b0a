"""Options are checked while the command line is parsed: a bad value is one line on stderr naming
the option, exit 2, and nothing heavy runs (no torch import, no model load)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pytest

import accuracy_run
import accuracy_run_perf
import check_accuracy_run_perf
import inference
from common import choices, cli, options
from common.engine.precision import check_dtype_for_device
from common.errors import SetupError
from tests.conftest import REPO

SCRIPTS = {
    "inference": (inference, "transcribe_command"),
    "accuracy_run": (accuracy_run, "accuracy_command"),
    "accuracy_run_perf": (accuracy_run_perf, "perf_command"),
    "check_accuracy_run_perf": (check_accuracy_run_perf, "check_command"),
}
FP16_ON_CPU = ("error: --dtype fp16: not supported on the CPU (fp16 LSTM/conv kernels are missing there); "
               "use bf16, int8 or fp32")

# (script, arguments before the audio path, what the one stderr line must contain)
BAD_OPTIONS = [
    ("inference", ["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    ("inference", ["--batch-size", "two"], "--batch-size 'two': not an integer"),
    ("inference", ["--batch-seconds", "0"], "--batch-seconds 0: must be greater than 0"),
    ("inference", ["--batch-seconds", "nan"], "--batch-seconds nan: must be a finite number"),
    ("inference", ["--long-audio-seconds=-5"], "--long-audio-seconds -5: must be greater than 0"),
    ("inference", ["--long-audio-seconds", "inf"], "--long-audio-seconds inf: must be a finite number"),
    ("inference", ["--engine", "direkt"], "--engine 'direkt': not one of batched, nemo"),
    ("inference", ["--dtype", "fp8"], "--dtype 'fp8': not one of fp32, bf16, fp16, int8"),
    ("accuracy_run", ["--device", "npu:0", "--dtype", "int8"], "--dtype int8: CPU only"),
    ("inference", ["--threads", "0"], "--threads"),
    ("inference", ["--device", "gpu"], "--device 'gpu': not one of"),
    ("inference", ["--decoder-device", "cpu:1"], "--decoder-device 'cpu:1': 'cpu' takes no index"),
    ("inference", ["--timestamps", "words"], "--timestamps 'words': not one of"),
    ("inference", ["--output-format", "csv"], "--output-format 'csv': not one of"),
    ("inference", ["--loader", "slow"], "--loader 'slow': not one of fast, nemo"),
    ("inference", ["--model", ""], "--model '': must not be empty"),
    ("inference", ["--output", " "], "--output ' ': must not be empty"),
    ("inference", ["--output-format", "jsonl", "--output-dir", "out"], "--output-format jsonl streams"),
    ("inference", ["--output-format", "srt", "b.wav"], "--output-format srt: 2 inputs need --output-dir"),
    ("inference", ["--engine", "nemo", "--decoder-device", "cpu"], "--decoder-device: needs --engine batched"),
    ("accuracy_run", ["--min-match", "1.5"], "--min-match 1.5: must be between 0 and 1"),
    ("accuracy_run", ["--min-match", "nan"], "--min-match nan: must be a finite number"),
    ("accuracy_run", ["--max-wer=-0.1"], "--max-wer -0.1: must be at least 0"),
    ("accuracy_run", ["--max-wer", "inf"], "--max-wer inf: must be a finite number"),
    ("accuracy_run", ["--max-wer", "NaN"], "--max-wer NaN: must be a finite number"),
    ("accuracy_run", ["--warmup", "-1"], "--warmup -1: must be at least 0"),
    ("accuracy_run", ["--reference", "tpu"], "--reference 'tpu': not one of"),
    ("accuracy_run", ["--reference-model", ""], "--reference-model '': must not be empty"),
    ("accuracy_run", ["--truth-text", "hello", "b.wav"], "--truth-text: applies to one input, got 2"),
    ("accuracy_run_perf", ["--dtype", ""], "--dtype '': must not be empty"),
    ("accuracy_run_perf", ["--engine", ""], "--engine '': must not be empty"),
    ("accuracy_run_perf", ["--engine", "nemo,"], "--engine 'nemo,': has an empty item"),
    ("accuracy_run_perf", ["--dtype", "fp32,,bf16"], "--dtype 'fp32,,bf16': has an empty item"),
    ("accuracy_run_perf", ["--dtype", "fp32,fp64"], "--dtype 'fp64': not one of fp32, bf16, fp16, int8"),
    ("accuracy_run_perf", ["--engine", "nemo,fast"], "--engine 'fast': not one of batched, nemo"),
    ("accuracy_run_perf", ["--devices", " , "], "--devices ' , ': must not be empty"),
    ("accuracy_run_perf", ["--devices", "cpu,tpu"], "--devices 'tpu': not one of"),
    ("accuracy_run_perf", ["--batch-sizes", "1,0"], "--batch-sizes 0: must be at least 1"),
    ("accuracy_run_perf", ["--batch-sizes", "1,x"], "--batch-sizes 'x': not an integer"),
    ("accuracy_run_perf", ["--runs", "0"], "--runs 0: must be at least 1"),
    ("accuracy_run_perf", ["--warmup", "-2"], "--warmup -2: must be at least 0"),
    ("accuracy_run_perf", ["--csv", ""], "--csv '': must not be empty"),
    ("inference", ["--decode-graphs", "maybe"], "--decode-graphs 'maybe': not one of off, on, auto"),
    ("accuracy_run", ["--decode-graphs", "yes"], "--decode-graphs 'yes': not one of off, on, auto"),
    ("accuracy_run_perf", ["--decode-graphs", "off,sometimes"], "--decode-graphs 'sometimes': not one of off, on, auto"),
    ("accuracy_run_perf", ["--decoder-device", "same,gpu"], "--decoder-device 'gpu': not one of"),
    ("accuracy_run_perf", ["--engine", "nemo", "--decoder-device", "cpu"], "--decoder-device: needs --engine batched"),
    ("check_accuracy_run_perf", ["--runs", "0"], "--runs 0: must be at least 1"),
    ("check_accuracy_run_perf", ["--max-wer", "nan"], "--max-wer nan: must be a finite number"),
    ("check_accuracy_run_perf", ["--min-match=-inf"], "--min-match -inf: must be a finite number"),
    ("check_accuracy_run_perf", ["--warmup", "-1"], "--warmup -1: must be at least 0"),
    ("check_accuracy_run_perf", ["--report-dir", ""], "--report-dir '': must not be empty"),
    ("inference", ["--limit", "0"], "--limit 0: must be a whole number of at least 1 or a fraction between 0 and 1"),
    ("accuracy_run", ["--limit", "1.5"], "--limit 1.5: must be a whole number of at least 1 or a fraction"),
    ("accuracy_run_perf", ["--limit", "nan"], "--limit nan: must be a finite number"),
    ("check_accuracy_run_perf", ["--limit", "ten"], "--limit 'ten': not a number"),
    ("inference", ["--input-layout", "wenet"], "--input-layout 'wenet': not one of auto, audio, manifest"),
    ("accuracy_run", ["--text-column", ""], "--text-column '': must not be empty"),
    ("accuracy_run", ["--seed=-1"], "--seed -1: must be at least 0"),
    ("accuracy_run", ["--html", ""], "--html '': must not be empty"),
    ("accuracy_run_perf", ["--html", " "], "--html ' ': must not be empty"),
]

FP16_ON_NAMED_CPU = [
    ("inference", ["--device", "cpu", "--dtype", "fp16"]),
    ("accuracy_run", ["--device", "cpu", "--dtype", "fp16"]),
    ("accuracy_run_perf", ["--device", "cpu", "--dtype", "fp32,fp16"]),
    ("accuracy_run_perf", ["--devices", "npu:0,cpu", "--dtype", "fp16"]),
    ("check_accuracy_run_perf", ["--device", "cpu", "--dtype", "fp16"]),
]


def run_main(name: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """The script's real main(), with its command replaced by one that fails the test: a bad option
    must be refused before anything (inputs, device, model) is looked at."""
    module, command = SCRIPTS[name]

    def must_not_run(args):
        raise AssertionError(f"{command} ran with a bad option: {args}")

    monkeypatch.setattr(module, command, must_not_run)
    start = time.perf_counter()
    code = module.main(argv)
    assert time.perf_counter() - start < 1.0, "the check happened too late"
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, expected: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --") and expected in lines[0], err
    assert "Traceback" not in err and "usage:" not in err


@pytest.mark.parametrize("name,argv,expected", BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_bad_option_is_one_line_and_exit_2(name, argv, expected, monkeypatch, capsys):
    code, out, err = run_main(name, [*argv, "a.wav"], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert_one_error_line(err, expected)


@pytest.mark.parametrize("name,argv", FP16_ON_NAMED_CPU, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_fp16_on_a_named_cpu_is_a_setup_error(name, argv, monkeypatch, capsys):
    code, _, err = run_main(name, [*argv, "a.wav"], monkeypatch, capsys)
    assert code == 2
    assert err.splitlines() == [FP16_ON_CPU]


def test_fp16_against_a_cpu_reference_is_fine(capsys):
    """The accuracy reference always runs fp32, so the usual `--device npu --dtype fp16` stays valid."""
    args = cli.parse_args(accuracy_run.build_parser(), ["--device", "npu:0", "--dtype", "fp16", "a.wav"], "x.py")
    assert args.reference == "cpu" and args.dtype == "fp16"


def test_dtype_for_device():
    with pytest.raises(SetupError) as refused:
        check_dtype_for_device("fp16", "cpu")
    assert refused.value.exit_code == 2 and str(refused.value) == FP16_ON_CPU[len("error: "):]
    for dtype, device in [("fp16", "cuda:0"), ("fp16", "npu:1"), ("bf16", "cpu"), ("fp32", "cpu")]:
        check_dtype_for_device(dtype, device)


def test_select_device_checks_the_dtype_once_resolved(monkeypatch):
    """--device auto that lands on the CPU: the job layer passes dtype= and gets the same error."""
    import common.device.accelerators as accelerators

    monkeypatch.setattr(accelerators, "_auto_device", lambda: accelerators.DeviceChoice("cpu", "auto: test"))
    with pytest.raises(SetupError, match="--dtype fp16: not supported on the CPU"):
        cli.select_device("auto", announce=False, dtype="fp16")
    assert cli.select_device("auto", announce=False, dtype="bf16").device == "cpu"


def test_limits_themselves_are_accepted(capsys):
    argv = ["--min-match", "0", "--max-wer", "0", "--warmup", "0", "--runs", "1", "a.wav"]
    args = cli.parse_args(check_accuracy_run_perf.build_parser(), argv, "x.py")
    assert (args.min_match, args.max_wer, args.warmup, args.runs) == (0.0, 0.0, 0, 1)
    args = cli.parse_args(accuracy_run_perf.build_parser(), ["--dtype", " fp32 , bf16", "a.wav"], "x.py")
    assert args.dtype == ["fp32", "bf16"] and args.engine == [choices.DEFAULT_ENGINE]
    assert args.batch_sizes == [choices.BATCH_SIZE] and args.batch_seconds == choices.BATCH_SECONDS
    assert capsys.readouterr().err == ""


def test_reference_text_still_works_with_a_warning(capsys):
    args = accuracy_run.build_parser().parse_args(["--reference-text", "Hello", "a.wav"])
    assert args.truth_text == "Hello" and not hasattr(args, "reference_text")
    assert capsys.readouterr().err == "warning: --reference-text is deprecated; use --truth-text\n"
    assert accuracy_run.build_parser().parse_args(["--truth-text", "Hi", "a.wav"]).truth_text == "Hi"
    assert capsys.readouterr().err == ""
    assert "--reference-text" not in accuracy_run.build_parser().format_help()


def test_engine_direct_still_works_with_a_warning(capsys):
    args = accuracy_run_perf.build_parser().parse_args(["--engine", "nemo,direct", "a.wav"])
    assert args.engine == ["nemo", "batched"]
    assert capsys.readouterr().err == "warning: --engine direct is deprecated; use --engine batched\n"
    assert inference.build_parser().parse_args(["--engine", "direct", "a.wav"]).engine == "batched"
    help_text = accuracy_run_perf.build_parser().format_help()
    assert "direct" not in help_text.replace("directly", "")


def test_help_is_unchanged_and_shows_defaults(capsys):
    assert accuracy_run_perf.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--runs RUNS" in out and "(default: 5)" in out and "(default: fp32)" in out


def test_argparse_own_errors_are_one_line_too(capsys):
    parser = cli.parser_from_doc("doc")
    parser.add_argument("--runs", type=options.integer(1))
    for argv, expected in [(["--runs"], "error: --runs expected one argument\n"),
                           (["--nope"], "error: unrecognized arguments: --nope\n")]:
        with pytest.raises(SystemExit) as done:
            parser.parse_args(argv)
        assert done.value.code == 2 and capsys.readouterr().err == expected


def test_value_parsers():
    assert options.integer(0)("0") == 0 and options.positive("0.5") == 0.5 and options.fraction("1") == 1.0
    assert options.comma_list(options.integer(1))("1, 4,16") == [1, 4, 16]
    for parse, text in [(options.positive, "-0.0"), (options.non_negative, "-1e-9"), (options.fraction, "1.0001"),
                        (options.non_negative, "1e999"), (options.positive, "nan"), (options.non_empty, "")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


HEAVY = ("torch", "nemo", "numpy", "lightning")


def test_nothing_heavy_is_imported_to_refuse_an_option():
    """In a fresh interpreter: every script refuses a bad option without importing torch/NeMo/numpy."""
    code = (
        "import sys, json\n"
        "import inference, accuracy_run, accuracy_run_perf, check_accuracy_run_perf\n"
        "codes = [inference.main(['--batch-size', '0', 'a.wav']), accuracy_run.main(['--max-wer', 'nan', 'a.wav']),\n"
        "         accuracy_run_perf.main(['--dtype', '', 'a.wav']), check_accuracy_run_perf.main(['--runs', '0', 'a.wav']),\n"
        "         inference.main(['--device', 'cpu', '--dtype', 'fp16', 'a.wav'])]\n"
        f"print(json.dumps([codes, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    codes, heavy = json.loads(proc.stdout)
    assert codes == [2, 2, 2, 2, 2] and heavy == [], proc.stderr
    assert len(proc.stderr.splitlines()) == 5 and "Traceback" not in proc.stderr


def test_a_bad_option_exits_fast_from_the_shell():
    """The measured bug: --runs 0 ran the whole accuracy stage, then died with StatisticsError."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "check_accuracy_run_perf.py", "--runs", "0", "examples/demo.wav"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - start < 5.0
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --runs 0: must be at least 1\n"


def test_a_broken_pipe_inside_the_body_is_quiet(capsys):
    def body():
        raise BrokenPipeError(32, "Broken pipe")

    assert cli.run(body) == cli.SIGPIPE_EXIT
    assert capsys.readouterr().err == ""


def run_with_stdout_closed(argv: list[str]) -> tuple[int, str]:
    """Run `argv` with stdout a pipe whose reader is gone (`... | head -c 0`): the read end is
    closed before the program writes anything, so its first write meets a closed pipe."""
    # Buffered stdout as a user has it: PYTHONUNBUFFERED would hide the failing flush at exit.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    os.close(read_end)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def assert_quiet_end(code: int, err: str) -> None:
    assert code == cli.SIGPIPE_EXIT, err
    assert "error" not in err.lower() and "Traceback" not in err and "Exception ignored" not in err, err


def test_output_still_buffered_at_the_end_is_dropped_quietly():
    body = "lambda: sys.stdout.write('x' * 100) and 0"
    assert_quiet_end(*run_with_stdout_closed(
        [sys.executable, "-c", f"import sys; from common import cli; sys.exit(cli.run({body}))"]))


def test_a_closed_stdout_ends_the_run_quietly(clips):
    assert_quiet_end(*run_with_stdout_closed(
        [sys.executable, "inference.py", "--model", "random:tiny", "--device", "cpu", "--output-format", "jsonl",
         "--audio", *clips]))
