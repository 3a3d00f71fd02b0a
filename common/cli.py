"""What every entry script shares: input/model/device/output arguments, the device line,
and turning errors into one line on stderr plus an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from typing import Callable

from .errors import SetupError, Terminated, ToolkitError

MODEL_HELP = ("a .nemo file, an extracted .nemo folder, a pretrained name (nvidia/parakeet-tdt-0.6b-v2, "
              "needs the Hugging Face hub), demo (a small model shipped in demo/, trained on synthetic speech, "
              "offline), or random:tiny / random:parakeet (random weights, offline). "
              "Default: $PARAKEET_MODEL, else ./parakeet-tdt-0.6b-v2.nemo if present, else "
              "nvidia/parakeet-tdt-0.6b-v2")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except empty ones, and keeps the description's line breaks."""

    def _get_help_string(self, action):
        # `in (None, [], False)` would also hide 0 and 0.0 (0 == False), which are real defaults.
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def parser_from_doc(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the script docstring's first paragraph and whose epilog
    (examples, exit status) is the rest."""
    first, _, rest = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(description=first, epilog=rest or None, formatter_class=HelpFormatter)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="AUDIO", help="same as --audio")
    parser.add_argument("--audio", nargs="+", default=[], metavar="AUDIO",
                        help="audio files (wav/flac/mp3/ogg/m4a, any rate and channels), folders of them, "
                             "or NeMo JSONL manifests")


def add_model_arguments(parser: argparse.ArgumentParser, device_default: str = "auto") -> None:
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--device", default=device_default,
                        help="auto | cpu | npu[:N] | cuda[:N]; auto = npu if torch_npu loads and sees a "
                             "device, else cuda, else cpu")
    parser.add_argument("--loader", choices=("fast", "nemo"), default="fast",
                        help="fast: cached extraction and memory-mapped weights; nemo: NeMo's restore_from()")


def add_dtype_argument(parser: argparse.ArgumentParser, help: str) -> None:
    from .engine.precision import DTYPES

    parser.add_argument("--dtype", default="fp32", choices=DTYPES, help=help)


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    """The accuracy verdict's thresholds (accuracy_run.py and the smoke chain)."""
    parser.add_argument("--min-match", type=float, default=1.0, help="minimum share of exactly matching files")
    parser.add_argument("--max-wer", type=float, default=0.0, help="maximum WER of device vs reference")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="FILE", default=None,
                        help="write the result to FILE (atomically) instead of stdout")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and library logs instead of one-line errors")


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep the records already in the results stream "
                             "beside --output (or in --output-dir) and run only the rest")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, script: str) -> argparse.Namespace:
    """Parse `argv` (default: sys.argv[1:]) and remember the command line for results files."""
    import os
    import shlex

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = shlex.join([os.path.basename(script)] + [str(a) for a in argv])
    return args


def input_paths(args: argparse.Namespace) -> list[str]:
    paths = list(args.audio) + list(args.paths)
    if not paths:
        raise SetupError("no input: give --audio AUDIO [AUDIO ...] (files, folders or manifests)")
    return paths


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def show_progress(json_mode: bool) -> bool:
    """Progress bars only for a person at a terminal."""
    return not json_mode and sys.stderr.isatty()


def select_device(spec: str, announce: bool = True):
    """Resolve --device and say once which device was chosen and why."""
    from .device.accelerators import resolve_device

    choice = resolve_device(spec)
    if choice.warning:
        say(f"warning: {choice.warning}")
    if announce:
        say(f"device: {choice.device} ({choice.reason})")
    return choice


def run(body: Callable[[], int], debug: bool = False) -> int:
    """Run a script body: a ToolkitError becomes one line and its exit code, anything else one
    line and exit 1; tracebacks only with --debug."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return body()
    except ToolkitError as error:
        if debug:
            traceback.print_exc()
        say(f"{error.label}: " + "; ".join(line.strip() for line in str(error).splitlines() if line.strip()))
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        say("interrupted")
        return 143 if isinstance(interrupt, Terminated) else 130
    except Exception as error:  # the last line of defence: never a bare traceback for a user
        if debug:
            traceback.print_exc()
        first_line = str(error).splitlines()[0] if str(error) else ""
        say(f"error: {type(error).__name__}: {first_line} (run with --debug for the traceback)")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated()
