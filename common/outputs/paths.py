"""Where results may be written, checked before any model is loaded: never onto an input, a
folder, or into a folder that does not exist or cannot be written; one file per input in
--output-dir, with names that cannot collide."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..choices import SUBTITLE_FORMATS
from ..errors import SetupError


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_file(output: str, inputs: list[str], option: str = "--output") -> None:
    """A setup error unless `output` can be created or replaced without touching an input."""
    path = Path(output)
    if any(_same_file(output, i) for i in inputs):
        raise SetupError(f"{option} {output}: is one of the inputs; it would be overwritten")
    if path.is_dir():
        raise SetupError(f"{option} {output}: is a folder; give a file name")
    check_writable_folder(path.parent if str(path.parent) else Path("."), f"{option} {output}")


def check_writable_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise SetupError(f"{what}: folder {folder} does not exist")
    if not folder.is_dir():
        raise SetupError(f"{what}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SetupError(f"{what}: folder {folder} is not writable")


def check_output_dir(output_dir: str) -> None:
    """--output-dir may not exist yet (it is created), but its parent must be writable."""
    path = Path(output_dir)
    if path.exists():
        check_writable_folder(path, f"--output-dir {output_dir}")
    else:
        check_writable_folder(path.parent if str(path.parent) else Path("."), f"--output-dir {output_dir}")


def per_input_names(paths: list[str], extension: str) -> list[str]:
    """A relative output name per input: its stem where stems are unique, else its path below
    the inputs' common folder (mirrored), and a numeric suffix for an input given twice."""
    stems = [Path(p).stem.strip("<>") for p in paths]  # audio on stdin, <stdin>, gives stdin.txt
    if len(set(stems)) == len(stems):
        names = stems
    else:
        resolved = [os.path.realpath(p) for p in paths]
        root = os.path.commonpath([os.path.dirname(r) for r in resolved])
        names = [str(Path(os.path.relpath(r, root)).with_suffix("")) for r in resolved]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return [f"{name}.{extension}" for name in unique]


def check_outputs(output: Optional[str], output_dir: Optional[str], inputs: list[str], extension: str) -> None:
    """Every output path of a run, checked against the inputs and the file system."""
    if output:
        check_output_file(output, inputs)
    if output_dir:
        check_output_dir(output_dir)
        for name in per_input_names(inputs, extension):
            target = os.path.join(output_dir, name)
            if any(_same_file(target, i) for i in inputs):
                raise SetupError(f"--output-dir {output_dir}: would overwrite the input {target}")


def check_subtitle_inputs(output_format: Optional[str], n_inputs: int, output_dir: Optional[str]) -> None:
    """One subtitle file per input: several inputs need a folder. Checked on the paths given, and
    again once folders and manifests are expanded."""
    if output_format in SUBTITLE_FORMATS and n_inputs > 1 and not output_dir:
        raise SetupError(f"--output-format {output_format}: {n_inputs} inputs need --output-dir DIR")
