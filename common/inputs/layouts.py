"""Test sets in the layouts people keep them, read where they lie, with their ground truth:

- LibriSpeech: `<speaker>/<chapter>/<id>.flac` beside `<speaker>-<chapter>.trans.txt` ("<id> TEXT" lines);
- Kaldi/WeNet data folders: `wav.scp` ("<utt> <path>") and `text` ("<utt> TEXT");
- Hugging Face `datasets`: a `save_to_disk` folder, or parquet files, with an audio column (embedded
  bytes, or a path) and a text column (detected, or named with --audio-column / --text-column).

Like sources.py, nothing here raises for a bad input: a bad line becomes that input's error,
naming the file and line (a dataset's row: `<container>#<row>`)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Optional

from .audio import os_error_reason
from .items import AUDIO_EXTENSIONS, AudioInput, EmbeddedAudio, InputOptions, input_id, resolve_relative

AUDIO_SUFFIXES = (".flac", ".wav")  # LibriSpeech's (flac) and its converted copies (wav)
DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")  # what save_to_disk writes
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text", "raw_text", "label")
AUDIO_COLUMNS = ("audio", "audio_filepath", "file", "path", "wav", "audio_path")
ID_COLUMNS = ("id", "utt_id", "utterance_id", "segment_id", "audio_id", "key", "sample_id")  # the first present is kept


def detect_layout(path: str) -> str:
    """'librispeech', 'kaldi', 'hf', 'manifest' or 'audio' (a file or a plain folder of audio)."""
    if os.path.isdir(path):
        names = set(_listdir(path))
        if "wav.scp" in names:
            return "kaldi"
        if names & set(DATASET_MARKERS):
            return "hf"
        if _find(path, lambda name: name.endswith(".trans.txt")):
            return "librispeech"
        if not _find(path, _is_audio_name) and _find(path, lambda name: name.lower().endswith(".parquet")):
            return "hf"  # a dataset's parquet files (as the hub keeps them: data/test-00000-of-00001.parquet)
        return "audio"
    lower = path.lower()
    if lower.endswith(".parquet"):
        return "hf"
    if os.path.basename(path) == "wav.scp":
        return "kaldi"
    if lower.endswith((".json", ".jsonl")):
        return "manifest"
    return "audio"


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _is_audio_name(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def _find(folder: str, wanted) -> bool:
    for _, _, names in os.walk(folder, followlinks=True):
        if any(wanted(n) for n in names):
            return True
    return False


def _relative(path: str, base: str) -> tuple[str, Optional[str]]:
    """A relative audio path: beside `base` if there, else in the working folder (the manifest rule)."""
    return resolve_relative(path, base)


# ------------------------------------------------------------------------------- LibriSpeech


def read_librispeech(folder: str) -> list[AudioInput]:
    """Every `*.trans.txt` under `folder` (sorted), each line an utterance whose audio is `<id>.flac`
    (or .wav) beside it; audio files without a transcript line come last, without truth."""
    if not os.path.isdir(folder):
        return [AudioInput(folder, error=f"{folder}: not a LibriSpeech folder (no such folder)")]
    items, listed, seen = [], set(), []
    for root, folders, names in os.walk(folder, followlinks=True):
        folders.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            if name.endswith(".trans.txt"):
                items.extend(_transcript_file(full, listed))
            elif name.lower().endswith(AUDIO_SUFFIXES):
                seen.append(full)
    if not items and not seen:
        return [AudioInput(folder, error=f"{folder}: no LibriSpeech transcripts (*.trans.txt) under it")]
    return items + [AudioInput(path, id=_stem(path)) for path in seen if os.path.normpath(path) not in listed]


def _stem(path: str) -> str:
    """LibriSpeech names each file by its utterance id: 1089-134686-0000.flac."""
    return os.path.splitext(os.path.basename(path))[0]


def _transcript_file(transcripts: str, listed: set) -> list[AudioInput]:
    folder, items = os.path.dirname(transcripts), []
    for where, line in _numbered_lines(transcripts, items):
        utterance, _, text = line.partition(" ")
        if not text.strip():
            items.append(AudioInput(where, error=f"{where}: expected '<utterance-id> TEXT'"))
            continue
        audio = next((os.path.join(folder, utterance + s) for s in AUDIO_SUFFIXES
                      if os.path.isfile(os.path.join(folder, utterance + s))), None)
        if audio is None:
            items.append(AudioInput(where, error=f"{where}: audio file not found: "
                                                 f"{os.path.join(folder, utterance)}.flac", id=utterance))
            continue
        listed.add(os.path.normpath(audio))
        items.append(AudioInput(os.path.normpath(audio), text=text.strip(), id=utterance))
    return items


def _numbered_lines(path: str, errors: list[AudioInput]):
    """(file:line, line) for each non-blank line; an unreadable file or a line that is not UTF-8
    becomes an error input in `errors`."""
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                where = f"{path}:{number}"
                try:
                    line = raw.decode("utf-8-sig").strip()
                except UnicodeDecodeError as error:
                    errors.append(AudioInput(where, error=f"{where}: not valid UTF-8 (byte {error.start + 1})"))
                    continue
                if line:
                    yield where, line
    except OSError as error:
        errors.append(AudioInput(path, error=f"{path}: {os_error_reason(error)}"))


# ------------------------------------------------------------------------------------ Kaldi


def read_kaldi(path: str) -> list[AudioInput]:
    """A Kaldi/WeNet data folder: `wav.scp` in order, truth from `text` when it has the utterance."""
    folder = os.path.dirname(path) if os.path.basename(path) == "wav.scp" else path
    scp, text_file = os.path.join(folder, "wav.scp"), os.path.join(folder, "text")
    if not os.path.isfile(scp):
        return [AudioInput(path, error=f"{path}: not a Kaldi data folder (no wav.scp)")]
    if os.path.exists(os.path.join(folder, "segments")):
        return [AudioInput(os.path.join(folder, "segments"),
                           error=f"{os.path.join(folder, 'segments')}: segmented recordings are not supported; "
                                 "cut the segments into files first")]
    items: list[AudioInput] = []
    truths: dict[str, str] = {}
    if os.path.exists(text_file):
        for where, line in _numbered_lines(text_file, items):
            utterance, _, text = line.partition(" ")
            truths[utterance] = " ".join(text.split())  # an utterance with no words has the empty truth
    recipe = os.path.dirname(os.path.dirname(os.path.abspath(folder)))  # the folder holding data/<set>
    for where, line in _numbered_lines(scp, items):
        utterance, _, location = line.partition(" ")
        location = location.strip()
        if not location:
            items.append(AudioInput(where, error=f"{where}: expected '<utterance-id> <audio path>'"))
        elif location.endswith("|"):
            items.append(AudioInput(where, error=f"{where}: a command ('... |') is not supported; "
                                                 "give the audio file's path"))
        else:
            audio, error = _relative(os.path.expanduser(location), recipe)
            items.append(AudioInput(where, error=f"{where}: {error}", id=utterance) if error else
                         AudioInput(audio, text=truths.get(utterance), id=utterance))
    return items or [AudioInput(scp, error=f"{scp}: no entries")]


# --------------------------------------------------------------------------- HF datasets


def read_hf(path: str, options: InputOptions) -> list[AudioInput]:
    """A `save_to_disk` folder (a Dataset, or a DatasetDict: every split), a parquet file, or a
    folder of parquet files."""
    try:
        if os.path.isdir(path) and not set(_listdir(path)) & set(DATASET_MARKERS):
            files = sorted(os.path.join(root, n) for root, _, names in os.walk(path) for n in names
                           if n.lower().endswith(".parquet"))
            if not files:
                return [AudioInput(path, error=f"{path}: no datasets folder (save_to_disk) or parquet files")]
            return [item for f in files for item in read_hf(f, options)]
        parts = _open_dataset(os.path.abspath(path))
    except Exception as error:  # datasets/pyarrow say what is wrong in their own words
        reason = os_error_reason(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
        return [AudioInput(path, error=f"{path}: not readable as a dataset ({reason.splitlines()[0]})")]
    items = []
    for split, dataset in parts:
        container = os.path.join(path, split) if split else path
        items.extend(_dataset_items(dataset, container, os.path.dirname(os.path.abspath(path)), options))
    return items


@lru_cache(maxsize=8)
def _open_dataset(path: str) -> list:
    """[(split or None, Dataset)], opened once per process (the audio is fetched row by row later)."""
    import datasets

    if os.path.isdir(path):
        loaded = datasets.load_from_disk(path)  # memory-mapped arrow files: nothing copied
        if isinstance(loaded, datasets.DatasetDict):
            return [(split, loaded[split]) for split in loaded]
        return [(None, loaded)]
    import pyarrow.parquet as pq

    return [(None, datasets.Dataset(pq.read_table(path, memory_map=True)))]  # the parquet file as it lies


def _dataset_items(dataset, container: str, base: str, options: InputOptions) -> list[AudioInput]:
    columns = list(dataset.column_names)
    audio_column = _column(options.audio_column, AUDIO_COLUMNS, columns, "--audio-column", container)
    text_column = _column(options.text_column, TEXT_COLUMNS, columns, "--text-column", container)
    if isinstance(audio_column, AudioInput):
        return [audio_column]
    if isinstance(text_column, AudioInput):
        return [text_column]
    texts = dataset.data.column(text_column).to_pylist()
    id_column = next((name for name in ID_COLUMNS if name in columns), None)
    ids = dataset.data.column(id_column).to_pylist() if id_column else [None] * len(texts)
    items = []
    for row, (has_bytes, location) in enumerate(_audio_cells(dataset.data.column(audio_column))):
        where, key = f"{container}#{row}", input_id(ids[row])
        text = str(texts[row]) if texts[row] is not None else None
        if has_bytes:
            fetch = _row_fetcher(dataset, audio_column, row)
            items.append(AudioInput(where, text=text, embedded=EmbeddedAudio(container, fetch, location), id=key))
            continue
        if not isinstance(location, str) or not location:
            items.append(AudioInput(where, error=f"{where}: column '{audio_column}' holds neither audio bytes "
                                                 "nor a path", id=key))
            continue
        resolved, error = _relative(os.path.expanduser(location), base)
        items.append(AudioInput(where, error=f"{where}: {error}", id=key) if error else
                     AudioInput(resolved, text=text, id=key))
    return items


def _audio_cells(column):
    """(holds bytes?, path or None) per row, without copying the audio: an Audio-style struct
    column {bytes, path} is read field by field, chunk by chunk; a string column is paths."""
    import pyarrow as pa

    if not pa.types.is_struct(column.type):
        for value in column.to_pylist():
            yield False, value if isinstance(value, str) else None
        return
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    for chunk in column.chunks:
        present = chunk.field("bytes").is_valid().to_pylist() if "bytes" in names else [False] * len(chunk)
        paths = chunk.field("path").to_pylist() if "path" in names else [None] * len(chunk)
        valid = chunk.is_valid().to_pylist()
        for ok, has_bytes, path in zip(valid, present, paths):
            yield (bool(ok and has_bytes), path if ok else None)


def _row_fetcher(dataset, column: str, row: int):
    return lambda: dataset.data.column(column)[row].as_py()["bytes"]


def _column(given: Optional[str], candidates: tuple, columns: list, option: str, container: str):
    """The column named by `option`, else the first usual name present; an error input if none."""
    if given is not None:
        if given in columns:
            return given
        return AudioInput(container, error=f"{container}: no column '{given}' ({option}); columns: {', '.join(columns)}")
    for name in candidates:
        if name in columns:
            return name
    return AudioInput(container, error=f"{container}: no {option[2:].replace('-', ' ')} found "
                                      f"(tried {', '.join(candidates)}); name it with {option}; "
                                      f"columns: {', '.join(columns)}")
