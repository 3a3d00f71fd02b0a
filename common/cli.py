"""What every entry script shares: input/model/device/output arguments, the device line,
and turning errors into one line on stderr plus an exit code."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable

from . import options, signals
from .choices import (DEFAULT_DTYPE, DEFAULT_ENCODER_RUNTIME, DEFAULT_GRAPH_MODE,
                      DEFAULT_LOADER, DTYPES, ENCODER_RUNTIMES, ENGINE_ALIASES, ENGINES, GRAPH_MODES, LAYOUTS,
                      LOADERS, LONG_AUDIO_SECONDS, MAX_WER, MIN_MATCH, DEFAULT_DEVICE)
from .errors import SetupError, Terminated, ToolkitError

MODEL_HELP = ("a .nemo file, an extracted .nemo folder, a folder holding one .nemo, a hub name "
              "(nvidia/parakeet-tdt-0.6b-v2: from the Hugging Face hub or the mirror in $HF_ENDPOINT, cached, "
              "resumed when cut), modelscope:ORG/NAME (requirements-hub.txt), demo (a small model shipped in demo/, "
              "trained on synthetic speech, offline), or random:tiny / random:parakeet (random weights, offline). "
              "Default: $PARAKEET_MODEL, else ./parakeet-tdt-0.6b-v2.nemo if present, else "
              "nvidia/parakeet-tdt-0.6b-v2")


GRAPHS_HELP = ("TDT decoding on an npu from device graphs (torch.npu.graph): its step functions captured once "
               "per batch size and length bucket, then replayed; on = always (eager with one warning if a "
               "capture fails), auto = on where torch.npu.graph exists, off = eager. CPU and CUDA are unchanged")
SIGPIPE_EXIT = 141  # what a shell reports for a process killed by SIGPIPE (128 + 13), as `| head` does


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit 2 (no usage block; --help shows it)."""

    def error(self, message: str):
        # argparse says "argument --runs: 0: must be at least 1"; read better as "--runs 0: must be ...".
        if message.startswith("argument "):
            option, _, problem = message[len("argument "):].partition(": ")
            message = f"{option} {problem}"
        self.exit(2, "error: " + " ".join(message.split("\n")) + "\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except empty ones, and keeps the description's line breaks."""

    def _get_help_string(self, action):
        # `in (None, [], False)` would also hide 0 and 0.0 (0 == False), which are real defaults.
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


# --help shows the options in these groups, in this order (a script shows those it has).
GROUPS = ("input", "model and device", "decoding", "output", "thresholds", "run control")


def parser_from_doc(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the script docstring's first paragraph and whose epilog
    (examples, exit status) is the rest, with the option groups of GROUPS."""
    first, _, rest = doc.strip().partition("\n\n")
    parser = Parser(description=first, epilog=rest or None, formatter_class=HelpFormatter)
    parser.option_groups = {title: parser.add_argument_group(title) for title in GROUPS}
    return parser


def group(parser: argparse.ArgumentParser, title: str):
    """The parser's option group `title` (one of GROUPS), where an option is added for --help."""
    return parser.option_groups[title] if hasattr(parser, "option_groups") else parser


def warn_deprecated(old: str, new: str) -> None:
    say(f"warning: {old} is deprecated; use {new}")


class DeprecatedOption(argparse.Action):
    """An old option name kept for one release: stores into the new option's dest, with a warning.
    Hidden from --help (pass help=argparse.SUPPRESS) so that only the new name is taught."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        warn_deprecated(option_string, self.new)
        setattr(namespace, self.dest, values)


def device_spec(text: str) -> str:
    """--device and friends: auto | cpu | npu[:N] | cuda[:N], checked without touching a device."""
    from .device.accelerators import DeviceError, parse_device_spec

    try:
        parse_device_spec(text)
    except DeviceError as error:
        problem = str(error).partition(": ")[2]  # drop its own "--device 'x'" prefix: the parser names the option
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}") from None
    return text


def decoder_device_spec(text: str) -> str:
    """A --decoder-device entry of accuracy_run_perf.py: a device, or 'same' (the device itself)."""
    return text if text == "same" else device_spec(text)


def engine_name(text: str) -> str:
    if text in ENGINE_ALIASES:
        warn_deprecated(f"--engine {text}", f"--engine {ENGINE_ALIASES[text]}")
        return ENGINE_ALIASES[text]
    return options.choice(ENGINES)(text)


def add_input_arguments(parser: argparse.ArgumentParser, seed_also: str = "") -> None:
    """The input options every script shares; `seed_also` names what else the script draws with
    --seed (accuracy_run.py: the bootstrap's resampling)."""
    section = group(parser, "input")
    section.add_argument("paths", nargs="*", metavar="AUDIO", help="same as --audio")
    section.add_argument("--audio", nargs="+", default=[], metavar="AUDIO",
                         help="audio files (wav/flac/mp3/ogg/m4a, any rate and channels), folders of them, "
                              "NeMo JSONL manifests, LibriSpeech folders, Kaldi/WeNet data folders (wav.scp + text), "
                              "Hugging Face datasets (save_to_disk folders, parquet files), or - for audio bytes on stdin")
    section.add_argument("--input-layout", type=options.choice(LAYOUTS), choices=LAYOUTS, default="auto",
                         help="how to read the paths; auto = detected from each path")
    section.add_argument("--text-column", type=options.non_empty, default=None,
                         help="datasets: the ground-truth column (default: text, transcript, transcription, sentence, ...)")
    section.add_argument("--audio-column", type=options.non_empty, default=None,
                         help="datasets: the audio column, bytes or path (default: audio, audio_filepath, file, path, ...)")
    section.add_argument("--limit", type=options.count_or_fraction, default=None, metavar="N|FRACTION",
                         help="a quick look: the first N inputs, or a share of them (e.g. 0.1) drawn with --seed")
    section.add_argument("--seed", type=options.integer(0), default=0,
                         help="seed of a fractional --limit's draw" + (f" (and of {seed_also})" if seed_also else ""))


def input_options(args: argparse.Namespace):
    """The --input-layout, column and --limit options as the inputs layer takes them."""
    from .inputs.items import InputOptions

    return InputOptions(layout=args.input_layout, text_column=args.text_column, audio_column=args.audio_column,
                        limit=args.limit, seed=args.seed)


def add_model_arguments(parser: argparse.ArgumentParser, device_default: str = DEFAULT_DEVICE) -> None:
    section = group(parser, "model and device")
    section.add_argument("--model", type=options.non_empty, default=None, help=MODEL_HELP)
    section.add_argument("--device", type=device_spec, default=device_default,
                         help="auto | cpu | npu[:N] | cuda[:N]; auto = npu if torch_npu loads and sees a "
                              "device, else cuda, else cpu")
    section.add_argument("--threads", type=options.integer(1), default=None,
                         help="CPU threads for torch (default: one per physical core; under torchrun the "
                              "cores split among this host's ranks)")
    section.add_argument("--loader", type=options.choice(LOADERS), choices=LOADERS, default=DEFAULT_LOADER,
                         help="fast: cached extraction and memory-mapped weights; nemo: NeMo's restore_from()")


DTYPE_HELP = ("bf16/fp16: autocast, with the encoder's matmul weights cast once (on an NPU autocast alone); "
              "int8 (CPU only): the encoder's matmuls in int8, weights quantized once per model file and cached; "
              "features stay fp32")


def add_dtype_argument(parser: argparse.ArgumentParser, what: str) -> None:
    # type= says a bad value in our words; choices= still lists them in --help.
    section = group(parser, "decoding")
    section.add_argument("--dtype", type=options.choice(DTYPES), choices=DTYPES, default=DEFAULT_DTYPE,
                         help=f"{what}. {DTYPE_HELP}")


def add_encoder_runtime_argument(parser: argparse.ArgumentParser, which: str = "") -> None:
    section = group(parser, "decoding")
    section.add_argument("--encoder-runtime", type=options.choice(ENCODER_RUNTIMES), choices=ENCODER_RUNTIMES,
                         default=DEFAULT_ENCODER_RUNTIME,
                         help=(f"{which}. " if which else "") +
                              "onnxruntime: the encoder in ONNX Runtime (CPU, fp32; exported once per model by "
                              "NeMo's export() into the cache; needs requirements-onnx.txt), 1.2-2x faster "
                              "than torch on the CPU (measured; it varies by CPU); decoding stays NeMo's")


def add_decode_graphs_argument(parser: argparse.ArgumentParser) -> None:
    section = group(parser, "decoding")
    section.add_argument("--decode-graphs", type=options.choice(GRAPH_MODES), choices=GRAPH_MODES,
                          default=DEFAULT_GRAPH_MODE, help=GRAPHS_HELP)


def add_long_audio_argument(parser: argparse.ArgumentParser) -> None:
    """The long-audio rule, the same in every script: longer inputs run alone with local attention."""
    section = group(parser, "decoding")
    section.add_argument("--long-audio-seconds", type=options.positive, default=LONG_AUDIO_SECONDS,
                         help="an input longer than this runs alone (its own batch) with local attention "
                              "(rel_pos_local_attn [128,128]), so memory grows linearly with its length")


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    """The accuracy verdict's thresholds (accuracy_run.py and the smoke chain)."""
    section = group(parser, "thresholds")
    section.add_argument("--min-match", type=options.fraction, default=MIN_MATCH,
                         help="minimum share of exactly matching files (0 to 1)")
    section.add_argument("--max-wer", type=options.non_negative, default=MAX_WER,
                         help="maximum WER of device vs reference")


def add_output_arguments(parser: argparse.ArgumentParser, stdout_too: bool = False) -> None:
    """--output, --json and --debug. `stdout_too`: the script prints its tables on stdout
    whether or not --output is given (the accuracy check, the benchmark)."""
    section = group(parser, "output")
    section.add_argument("--output", metavar="FILE", type=options.non_empty, default=None,
                         help="also write the result as JSON to FILE (atomically)" if stdout_too else
                         "write the result to FILE (atomically) instead of stdout")
    section.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    group(parser, "run control").add_argument("--debug", action="store_true",
                                              help="show tracebacks and library logs instead of one-line errors")


def add_html_argument(parser: argparse.ArgumentParser) -> None:
    section = group(parser, "output")
    section.add_argument("--html", metavar="FILE", type=options.non_empty, default=None,
                         help="also write a self-contained HTML report (verdict, tables, plots, word differences) "
                              "to FILE, atomically")


def check_output_targets_of(args: argparse.Namespace, paths: list[str]) -> None:
    """--output, --csv and --html must each be a new or replaceable file, none of them an input,
    a folder or another of them (checked before anything heavy runs)."""
    from .outputs.paths import check_output_file

    targets = [(option, getattr(args, option[2:], None)) for option in ("--output", "--csv", "--html")]
    targets = [(option, path) for option, path in targets if path]
    inputs = [p for p in paths if os.path.exists(p)]
    for n, (option, path) in enumerate(targets):
        check_output_file(path, inputs, option)
        for other, other_path in targets[n + 1:]:
            if os.path.abspath(path) == os.path.abspath(other_path):
                raise SetupError(f"{other} {other_path}: is also {option}; give each its own file")


def add_resume_argument(parser: argparse.ArgumentParser, where: str = "beside --output (or in --output-dir)") -> None:
    """--resume; `where`: where the script keeps its results stream, in the options it accepts."""
    section = group(parser, "run control")
    section.add_argument("--resume", action="store_true",
                         help="continue an interrupted run: keep the records already in the results stream "
                              f"{where} and run only the rest")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, script: str) -> argparse.Namespace:
    """Parse `argv` (default: sys.argv[1:]), check the options that go together, and remember the
    command line for results files. A bad option is one line on stderr and SystemExit(2)."""
    import shlex

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        check_combinations(args)
    except SetupError as error:
        if args.debug:
            traceback.print_exc()
        parser.error(str(error))
    args.command_line = shlex.join([os.path.basename(script)] + [str(a) for a in argv])
    return args


def main(parser: argparse.ArgumentParser, argv: list[str] | None, script: str,
         command: Callable[[argparse.Namespace], int]) -> int:
    """A script's main(): parse and check every option first (nothing heavy imported yet), then
    run `command(args)`. Returns the exit status; 2 for a bad option, already said in one line."""
    try:
        args = parse_args(parser, argv, script)
    except SystemExit as done:  # a bad option (2) or --help (0)
        return done.code if isinstance(done.code, int) else 0
    return run(lambda: command(args), debug=args.debug)


# ---------------------------------------------------------------- options that go together
# Each rule reads only the attributes its script has (getattr), so all scripts share one list.


def check_combinations(args: argparse.Namespace) -> None:
    check_rank_device(args)
    check_dtype_on_named_devices(args)
    check_decoder_device(args)
    check_output_targets(args)
    check_single_input_options(args)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def check_rank_device(args) -> None:
    """Under torchrun every rank takes the card of its LOCAL_RANK: a fixed --device npu:N is refused."""
    if getattr(args, "device", None) and ("WORLD_SIZE" in os.environ or "LOCAL_RANK" in os.environ):
        from .ranks.world import rank_device_spec, world_from_env

        world = world_from_env()
        rank_device_spec(args.device, world)
        if world.ranked and hasattr(args, "resume") and not (args.output or getattr(args, "output_dir", None)):
            raise SetupError("under torchrun give --output FILE (or --output-dir DIR): the ranks keep their "
                             "records beside it and rank 0 merges them there")


def check_dtype_on_named_devices(args) -> None:
    """fp16 on a CPU the user named, and the encoder runtime with them; `auto` is checked once
    resolved (select_device(dtype=...)). The accuracy reference always runs fp32 in torch, so
    --reference is not one of them."""
    from .engine.precision import check_dtype_for_device, check_encoder_runtimes

    devices = getattr(args, "devices", None) or _as_list(getattr(args, "device", None))
    dtypes = _as_list(getattr(args, "dtype", None))
    for dtype in dtypes:
        for device in devices:
            check_dtype_for_device(dtype, device)
    runtimes = [r for r in _as_list(getattr(args, "encoder_runtime", None)) if r != "torch"]
    if runtimes and devices and dtypes:
        check_encoder_runtimes(runtimes, devices, dtypes)


def check_decoder_device(args) -> None:
    elsewhere = [d for d in _as_list(getattr(args, "decoder_device", None)) if d != "same"]
    # a sweep (several placements) runs the nemo engine where the decoder stays with the encoder only
    if elsewhere and len(_as_list(args.decoder_device)) == 1 and "nemo" in _as_list(args.engine):
        raise SetupError("--decoder-device: needs --engine batched (NeMo's transcribe() keeps the decoder "
                         "with the encoder)")


def check_output_targets(args) -> None:
    if not hasattr(args, "output_format"):
        return
    output_format = "json" if args.json else args.output_format
    if output_format == "jsonl" and args.output_dir:
        raise SetupError("--output-format jsonl streams into one file: use --output FILE, not --output-dir")
    check_subtitle_inputs(output_format, len(args.audio) + len(args.paths), args.output_dir)


def check_subtitle_inputs(output_format: str, n_inputs: int, output_dir) -> None:
    """One subtitle file per input: several inputs need a folder (the job checks again once
    folders and manifests are expanded)."""
    from .outputs.paths import check_subtitle_inputs as check

    check(output_format, n_inputs, output_dir)


def check_single_input_options(args) -> None:
    """--truth-text is one transcript: several paths cannot share it (a folder is checked once expanded)."""
    n_paths = len(getattr(args, "audio", [])) + len(getattr(args, "paths", []))
    if getattr(args, "truth_text", None) is not None and n_paths > 1:
        raise SetupError(f"--truth-text: applies to one input, got {n_paths}; use a manifest with 'text'")


def input_paths(args: argparse.Namespace) -> list[str]:
    paths = list(args.audio) + list(args.paths)
    if not paths:
        raise SetupError("no input: give --audio AUDIO [AUDIO ...] (files, folders or manifests)")
    return paths


def launch_line(args, ranks) -> str:
    """The command line to repeat (resume hints): under torchrun, with torchrun in front."""
    if ranks is not None and ranks.ranked:
        nodes = "" if ranks.size == ranks.local_size else f"--nnodes {ranks.size // ranks.local_size} ... "
        return f"torchrun {nodes}--nproc-per-node {ranks.local_size} {args.command_line}"
    return args.command_line


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def show_progress(json_mode: bool) -> bool:
    """Progress bars only for a person at a terminal."""
    return not json_mode and sys.stderr.isatty()


def world():
    """This process's place under torchrun (a world of one without it)."""
    from .ranks.world import world_from_env

    return world_from_env()


def select_device(spec: str, announce: bool = True, dtype: str | list | None = None, ranks=None,
                  threads: int | None = None):
    """Resolve --device and say once which device was chosen and why. With `dtype`, a precision
    that device cannot run (fp16 on a CPU that `auto` chose) is a SetupError here, before any load.
    Under torchrun (`ranks`, a World of several) the rank takes the card of its LOCAL_RANK. Given
    `ranks` (the script's main device), sets torch's CPU threads: `threads` (--threads), else the
    physical cores, or this rank's share of them."""
    from .device.accelerators import DeviceChoice, resolve_device
    from .device.threads import use_threads
    from .engine.precision import check_dtype_for_device, cpu_precision_warning
    from .ranks.world import rank_threads

    choice = resolve_device(spec)
    if ranks is not None and ranks.ranked:
        from .ranks.world import device_for_rank, rank_device_spec

        rank_device_spec(spec, ranks)
        device = device_for_rank(choice.device, ranks)
        if device != choice.device:
            choice = resolve_device(device)
        choice = DeviceChoice(choice.device, f"{ranks.label}, LOCAL_RANK {ranks.local_rank}; {choice.reason}",
                              choice.warning)
        announce = announce and ranks.is_main
    if choice.warning:
        say(f"warning: {choice.warning}")
    for name in _as_list(dtype):
        check_dtype_for_device(name, choice.device)
    # The script's own device (the one called with `ranks`) sets the threads; a reference or
    # decoder device chosen after it leaves them.
    used = None if ranks is None else use_threads(rank_threads(ranks, requested=threads) if ranks.ranked else threads)
    if announce:
        say(f"device: {choice.device} ({choice.reason})" + (f"; {used} CPU thread(s)" if used else ""))
        for name in _as_list(dtype):
            slow = cpu_precision_warning(name) if choice.device == "cpu" else None
            if slow:
                say(f"warning: {slow}")
    return choice


def run(body: Callable[[], int], debug: bool = False) -> int:
    """Run a script body: a ToolkitError becomes one line and its exit code, anything else one
    line and exit 1; tracebacks only with --debug."""
    restore_signals = signals.install()
    try:
        code = body()
        sys.stdout.flush()  # output still buffered meets a closed pipe here, not at interpreter exit
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like a SIGPIPE death
        _stdout_to_devnull()
        return SIGPIPE_EXIT
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
        restore_signals()


def _stdout_to_devnull() -> None:
    """After a broken pipe, point stdout at devnull so that Python's own flush at exit cannot raise
    again (the recipe of the Python docs' "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured by a test): nothing to do
        pass
