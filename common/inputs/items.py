"""One input as the rest of the toolkit sees it (`AudioInput`), and reading its signal, whether
the audio is a file or bytes held in a dataset (`EmbeddedAudio`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from .audio import load_audio, load_audio_bytes

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")


@dataclass(frozen=True)
class EmbeddedAudio:
    """Audio bytes inside a container (a parquet file, a `save_to_disk` folder), read on demand."""

    container: str  # the file or folder holding it
    fetch: Callable[[], bytes] = field(repr=False, compare=False)
    name: Optional[str] = None  # the original file name the dataset kept, if any (its extension helps decoding)


@dataclass
class AudioInput:
    path: str  # a file, or "<container>#<row>" for audio embedded in a dataset
    text: Optional[str] = None  # ground truth: a manifest's text, a transcript file, a dataset's text column
    duration: Optional[float] = None  # from a manifest; the decoded length is what counts
    error: Optional[str] = None  # set when the input cannot be used at all
    warning: Optional[str] = None  # usable, but its result should say so (a WAV header overstating the length)
    embedded: Optional[EmbeddedAudio] = None  # audio bytes inside a dataset rather than a file at `path`
    entry: Optional[dict] = None  # the manifest line it came from (NeMo result manifests keep its fields)
    id: Optional[Union[str, int]] = None  # the test set's id: Kaldi/LibriSpeech utterance, a dataset's or manifest's id


def input_id(value) -> Optional[Union[str, int]]:
    """A test set's id as it is kept (a string or an integer); anything else is no id."""
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "" else None


def read_signal(item: AudioInput):
    """The input's 16 kHz mono float32 signal; an AudioError (an InputError) naming it otherwise."""
    if item.embedded is None:
        return load_audio(item.path)
    return load_audio_bytes(item.embedded.fetch, item.path, item.embedded.name)


@dataclass(frozen=True)
class InputOptions:
    """How --audio paths are read: the layout (auto = detected from each path), the dataset
    columns, and a subset for quick looks."""

    layout: str = "auto"
    text_column: Optional[str] = None
    audio_column: Optional[str] = None
    limit: Optional[float] = None  # an int N: the first N inputs; a fraction in (0, 1): that share, drawn with `seed`
    seed: int = 0


def resolve_relative(path: str, base: str) -> tuple[str, Optional[str]]:
    """(the path to read, None), or (the path, why it cannot be found) for a relative path found
    neither beside the manifest nor in the working folder. An absolute path is taken as it is:
    reading it says what is wrong with it."""
    if os.path.isabs(path):
        return os.path.normpath(path), None
    beside_manifest = os.path.normpath(os.path.join(base, path))
    in_working_folder = os.path.normpath(os.path.abspath(path))
    for candidate in (beside_manifest, in_working_folder):
        if os.path.lexists(candidate):
            return candidate, None
    if beside_manifest == in_working_folder:
        return beside_manifest, (f"audio file not found: tried {beside_manifest} (relative to the manifest "
                                 "and to the working folder)")
    return beside_manifest, (f"audio file not found: tried {beside_manifest} (relative to the manifest) "
                             f"and {in_working_folder} (relative to the working folder)")
