"""The inputs layer's contract: reading one bad input raises only InputError (one line naming the
file and the problem), collect_inputs never raises, and a WAV header that overstates the length
is decoded with a warning rather than rejected."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import soundfile

from common.errors import InputError
from common.inputs.audio import check_audio_header, load_audio
from common.inputs.sources import collect_inputs, read_manifest


def write_lying_wav(path, signal: np.ndarray, claimed_samples: int) -> None:
    """A correct 16-bit WAV of `signal` whose data chunk then claims `claimed_samples` samples,
    as a recorder that was cut off before fixing its header leaves it."""
    soundfile.write(path, signal, 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 2 * claimed_samples)
    data[4:8] = struct.pack("<I", at + 8 + 2 * claimed_samples - 8)
    path.write_bytes(bytes(data))


@pytest.fixture
def lying_and_correct(tmp_path, clips):
    signal, _ = soundfile.read(clips[0], dtype="float32")
    head = signal[: len(signal) // 2]
    correct, lying = tmp_path / "correct.wav", tmp_path / "lying.wav"
    soundfile.write(correct, head, 16000, subtype="PCM_16")
    write_lying_wav(lying, head, claimed_samples=len(signal))
    return lying, correct


def test_a_header_that_overstates_the_length_decodes_with_a_warning(lying_and_correct):
    lying, correct = lying_and_correct
    assert check_audio_header(str(correct)) == []
    warnings = check_audio_header(str(lying))
    assert len(warnings) == 1 and warnings[0].startswith(f"{lying}: ") and "header" in warnings[0], warnings
    np.testing.assert_array_equal(load_audio(str(lying)), load_audio(str(correct)))
    items = collect_inputs([str(correct), str(lying)])
    assert [item.warning for item in items] == [None, warnings[0]]
    assert all(item.error is None for item in items)


def bad_paths(folder) -> dict:
    """name -> (path, words expected in its error), for paths whose stat or open() fails."""
    (folder / "dir.wav").mkdir()
    os.mkfifo(folder / "pipe.wav")
    os.symlink(folder / "nowhere.wav", folder / "dangling.wav")
    os.symlink(folder / "loop.wav", folder / "loop.wav")
    paths = {
        "folder": (folder / "dir.wav", "is a folder"),
        "fifo": (folder / "pipe.wav", "not a regular file"),
        "dangling": (folder / "dangling.wav", "no such file"),
        "loop": (folder / "loop.wav", "too many levels of symbolic links"),
        "null byte": (f"{folder}/nul\0.wav", "embedded null byte"),
    }
    if os.geteuid() != 0:  # root reads a chmod 000 file; test_bad_input covers that case as root too
        unreadable = folder / "locked.wav"
        soundfile.write(unreadable, np.zeros(1600, dtype=np.float32), 16000)
        unreadable.chmod(0)
        paths["permission"] = (unreadable, "permission denied")
    return {name: (str(path), words) for name, (path, words) in paths.items()}


@pytest.mark.parametrize("read", [load_audio, check_audio_header])
def test_os_errors_are_input_errors_naming_the_file(tmp_path, read):
    for path, words in bad_paths(tmp_path).values():
        with pytest.raises(InputError) as raised:
            read(path)
        message = str(raised.value)
        assert message.startswith(f"{path}: ") and words in message.lower() and "\n" not in message, message


def test_collect_inputs_never_raises_and_does_not_block_on_a_pipe(tmp_path):
    paths = bad_paths(tmp_path)
    items = collect_inputs([path for path, _ in paths.values()])
    assert [item.path for item in items] == [path for path, _ in paths.values()]
    # A file that exists is checked later, when read; the others are errors at once.
    assert items[0].error == f"{paths['folder'][0]}: is a folder holding no audio files " \
                             "(wav/flac/mp3/ogg/opus/m4a/aiff/aif)"
    assert all(item.warning is None for item in items)


def manifest_lines(good: list[str]) -> list[bytes]:
    return [
        b'\xef\xbb\xbf{"audio_filepath": "%s", "text": "a"}' % good[0].encode(),  # a BOM, as Windows editors write
        b'\xff\xfe{"audio_filepath": "x.wav"}',
        b"{not json",
        b'{"duration": 1}',
        b"[" * 100000,
        b'{"audio_filepath": "%s", "duration": 1e999}' % good[1].encode(),
        b"",
        b'{"audio_filepath": "%s", "duration": 1.5}' % good[2].encode(),
    ]


def test_every_bad_manifest_line_is_its_own_error_and_the_others_count(tmp_path, clips):
    manifest = tmp_path / "set.jsonl"
    manifest.write_bytes(b"\n".join(manifest_lines(clips)) + b"\n")
    items = collect_inputs([str(manifest)])
    errors = [item.error for item in items if item.error]
    assert errors == [
        f"{manifest}:2: not valid UTF-8 (byte 1)",
        f"{manifest}:3: invalid JSON (Expecting property name enclosed in double quotes)",
        f"{manifest}:4: no 'audio_filepath' string",
        f"{manifest}:5: invalid JSON (nested too deeply)",
    ]
    good = [item for item in items if not item.error]
    assert [item.path for item in good] == clips[:3]
    assert [(item.text, item.duration) for item in good] == [("a", None), (None, None), (None, 1.5)]


def test_a_manifest_that_cannot_be_read_is_one_error_input(tmp_path):
    folder = tmp_path / "set.jsonl"
    folder.mkdir()
    assert [(i.path, i.error) for i in read_manifest(str(folder))] == [(str(folder), f"{folder}: is a directory")]


def test_folder_scan_finds_every_format_and_follows_linked_folders_once(tmp_path):
    signal = np.zeros(1600, dtype=np.float32)
    corpus = tmp_path / "corpus"
    (corpus / "real").mkdir(parents=True)
    for name, kind in (("a.opus", dict(format="OGG", subtype="OPUS")), ("b.aiff", {}), ("c.AIF", dict(format="AIFF")),
                       ("real/d.wav", {})):
        soundfile.write(corpus / name, signal, 16000, **kind)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    soundfile.write(elsewhere / "e.flac", signal, 16000)
    os.symlink(elsewhere, corpus / "linked")
    os.symlink(corpus, corpus / "real" / "back-to-top")  # a loop
    found = [item.path for item in collect_inputs([str(corpus)])]
    assert found == [str(corpus / name) for name in ("a.opus", "b.aiff", "c.AIF", "linked/e.flac", "real/d.wav")]
    assert all(load_audio(path).size == 1600 for path in found)


# ------------------------------------------------------------------ relative paths in a manifest


def test_relative_manifest_paths_beside_the_manifest_then_in_the_working_folder(capsys, tiny_nemo, clips, tmp_path,
                                                                                monkeypatch):
    """NeMo's rule first (relative to the manifest's folder), then the working folder (exported
    manifests), else an error for that line naming both tries; the other lines still run."""
    import shutil

    from tests.test_inference import run_json

    data, work = tmp_path / "data" / "set", tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    data.mkdir(parents=True)
    shutil.copy(clips[0], data / "a.wav")  # only beside the manifest
    shutil.copy(clips[1], work / "sub" / "b.wav")  # only in the working folder
    shutil.copy(clips[2], data / "both.wav")  # in both: the manifest's folder wins
    shutil.copy(clips[3], work / "both.wav")
    manifest = data / "dev.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": name}) + "\n"
                                for name in ("a.wav", "sub/b.wav", "both.wav", "missing.wav")))
    monkeypatch.chdir(work)

    code, doc, err = run_json(capsys, "--model", tiny_nemo, "--audio", manifest, *clips[:3])
    results = doc["results"]
    assert code == 1
    assert [r["path"] for r in results[:3]] == [str(data / "a.wav"), str(work / "sub" / "b.wav"),
                                                str(data / "both.wav")]
    direct = [r["text"] for r in results[4:]]
    assert [r["text"] for r in results[:3]] == direct and all(direct)
    expected = (f"{manifest}:4: audio file not found: tried {data / 'missing.wav'} (relative to the manifest) "
                f"and {work / 'missing.wav'} (relative to the working folder)")
    assert results[3]["error"] == expected and results[3]["text"] is None
    assert expected in err
    assert doc["summary"]["ok"] == 6 and doc["summary"]["failed"] == 1


def test_a_manifest_in_the_working_folder_tries_one_place(tmp_path, monkeypatch):
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "gone.wav"}) + "\n")
    monkeypatch.chdir(tmp_path)
    [item] = read_manifest("dev.jsonl")
    assert item.error == (f"dev.jsonl:1: audio file not found: tried {tmp_path / 'gone.wav'} "
                          "(relative to the manifest and to the working folder)")
