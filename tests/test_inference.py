"""inference.py end to end, with NeMo's own model.transcribe() as the oracle."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile

import inference
from tests.conftest import REPO


def run_json(capsys, *argv) -> tuple[int, dict, str]:
    code = inference.main([*map(str, argv), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def nemo_reference(nemo_model, paths, batch_size):
    """NeMo transcribing the files itself (its own loader), with timestamps in seconds."""
    hyps = nemo_model.transcribe([str(p) for p in paths], batch_size=batch_size, timestamps=True, verbose=False)
    return list(hyps[0] if isinstance(hyps, tuple) else hyps)


def in_clip(seconds: float, path) -> float:
    """A NeMo time as the toolkit reports it: NeMo's end times can run past the audio; the
    toolkit's stop at its duration, to the millisecond."""
    return min(seconds, math.floor(soundfile.info(str(path)).duration * 1000) / 1000)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_text_and_timestamps_match_nemo(capsys, tiny_nemo, nemo_model, clips, batch_size):
    code, doc, _ = run_json(capsys, "--model", tiny_nemo, "--timestamps", "all", "--batch-size", batch_size, *clips)
    assert code == 0
    expected = nemo_reference(nemo_model, clips, 1)  # NeMo's end times depend on batch mates (#16097)
    assert [r["path"] for r in doc["results"]] == clips
    for result, hyp in zip(doc["results"], expected):
        assert result["text"] == hyp.text
        assert result["error"] is None
        assert result["device"] == "cpu" and result["model"] == str(tiny_nemo)
        assert result["duration"] == pytest.approx(soundfile.info(result["path"]).duration, abs=1e-3)
        for kind, key in (("word", "word"), ("segment", "segment")):
            ours = result["timestamps"][kind]
            theirs = hyp.timestamp[kind]
            assert [e[key] for e in ours] == [e[key] for e in theirs]
            for edge in ("start", "end"):
                assert [e[edge] for e in ours] == \
                    pytest.approx([in_clip(e[edge], result["path"]) for e in theirs], abs=1e-3)
        assert result["timestamps"]["char"], "char timestamps requested but missing"


def test_timestamps_switch_off_again(tiny_nemo, clips):
    """NeMo keeps computing timestamps once asked (the decoding config is the model's): a later
    call without them on the same loaded model must turn NeMo's timestamp computation off again."""
    from common import load_model
    from common.engine.batched import decode_batch
    from common.inputs.audio import load_audio

    model = load_model(str(tiny_nemo), device="cpu")
    nemo = model.loaded.model
    signal = load_audio(clips[0])

    def nemo_word_timestamps() -> bool:
        """Whether NeMo's own decoding of this model now yields word timestamps."""
        hypothesis = decode_batch(nemo, [signal], "cpu")[0]
        return isinstance(hypothesis.timestamp, dict) and "word" in hypothesis.timestamp

    assert model.transcribe(signal, timestamps="word").words
    assert nemo_word_timestamps() and nemo.cfg.decoding.compute_timestamps
    record = model.transcribe(signal)
    assert record.timestamps is None and record.text
    assert not nemo_word_timestamps() and not nemo.cfg.decoding.compute_timestamps
    assert model.transcribe(signal, timestamps="word").words  # and on again


def test_resampled_and_stereo_inputs_give_the_original_text(capsys, tiny_nemo, tmp_path, clips):
    import librosa

    # Band-limit the original below 4 kHz so that an 8 kHz copy holds the same information.
    signal, _ = soundfile.read(clips[2], dtype="float32")
    narrow = librosa.resample(librosa.resample(signal, orig_sr=16000, target_sr=8000), orig_sr=8000, target_sr=16000)
    original = tmp_path / "original.wav"
    soundfile.write(original, narrow, 16000, subtype="FLOAT")
    variants = {
        "rate8k.wav": (librosa.resample(narrow, orig_sr=16000, target_sr=8000), 8000),
        "rate44k.flac": (librosa.resample(narrow, orig_sr=16000, target_sr=44100), 44100),
        "stereo.wav": (np.stack([narrow, narrow], axis=1), 16000),
    }
    for name, (data, rate) in variants.items():
        soundfile.write(tmp_path / name, data, rate, subtype="FLOAT" if name.endswith(".wav") else "PCM_24")
    paths = [original] + [tmp_path / name for name in variants]
    code, doc, _ = run_json(capsys, "--model", tiny_nemo, "--batch-size", 1, *paths)
    assert code == 0
    texts = [r["text"] for r in doc["results"]]
    assert texts[0] and texts[1:] == [texts[0]] * 3
    durations = [r["duration"] for r in doc["results"]]
    assert durations == pytest.approx([durations[0]] * 4, abs=1e-3)

    from common.inputs.audio import load_audio

    reference = load_audio(str(original))
    for name in variants:
        converted = load_audio(str(tmp_path / name))
        n = min(len(converted), len(reference))
        error = np.linalg.norm(converted[:n] - reference[:n]) / np.linalg.norm(reference[:n])
        assert error < 0.05, f"{name}: relative difference {error:.3f} after conversion to 16 kHz mono"


def test_folder_and_manifest_inputs(capsys, tiny_nemo, speech_dir, clips, tmp_path):
    manifest = tmp_path / "set.jsonl"
    lines = [json.dumps({"audio_filepath": str(speech_dir / "clip1.wav"), "duration": 1.0, "text": "truth"}),
             json.dumps({"audio_filepath": "relative.wav"})]
    shutil.copy(clips[3], tmp_path / "relative.wav")
    manifest.write_text("\n".join(lines) + "\n")
    code, doc, _ = run_json(capsys, "--model", tiny_nemo, "--audio", speech_dir, manifest)
    assert code == 0
    paths = [r["path"] for r in doc["results"]]
    assert paths == clips + [str(speech_dir / "clip1.wav"), str(tmp_path / "relative.wav")]
    assert doc["results"][4]["truth"] == "truth"
    assert doc["results"][4]["text"] == doc["results"][1]["text"]
    assert doc["results"][5]["text"] == doc["results"][3]["text"]
    assert doc["summary"] == {"files": 6, "ok": 6, "failed": 0,
                              "audio_seconds": pytest.approx(sum(r["duration"] for r in doc["results"]), abs=1e-2)}


def test_extracted_folder_model_gives_same_text(capsys, tiny_nemo, clips, tmp_path):
    folder = tmp_path / "extracted"
    with tarfile.open(tiny_nemo) as archive:
        archive.extractall(folder, filter="data")
    _, from_file, _ = run_json(capsys, "--model", tiny_nemo, clips[0])
    code, from_folder, _ = run_json(capsys, "--model", folder, clips[0])
    assert code == 0 and from_folder["model"]["kind"] == "extracted_dir"
    assert from_folder["results"][0]["text"] == from_file["results"][0]["text"]


# ------------------------------------------------------------------ output formats

SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n")


def _seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def test_text_srt_vtt_json_agree(capsys, tiny_nemo, clips, tmp_path):
    _, doc, _ = run_json(capsys, "--model", tiny_nemo, "--timestamps", "segment", clips[1])
    text = doc["results"][0]["text"]
    segments = doc["results"][0]["timestamps"]["segment"]

    assert inference.main(["--model", str(tiny_nemo), clips[1]]) == 0
    assert capsys.readouterr().out == text + "\n"

    srt_file = tmp_path / "out.srt"
    assert inference.main(["--model", str(tiny_nemo), "--output-format", "srt", "--output", str(srt_file), clips[1]]) == 0
    cues = SRT_CUE.findall(srt_file.read_text())
    assert [int(c[0]) for c in cues] == list(range(1, len(segments) + 1))
    assert " ".join(c[9] for c in cues) == text
    duration = doc["results"][0]["duration"]  # a cue never runs past the audio (NeMo's last frame may)
    for cue, segment in zip(cues, segments):
        assert _seconds(*cue[1:5]) == pytest.approx(segment["start"], abs=1e-3)
        assert _seconds(*cue[5:9]) == pytest.approx(min(segment["end"], duration), abs=1e-3)

    assert inference.main(["--model", str(tiny_nemo), "--output-format", "vtt", clips[1]]) == 0
    vtt = capsys.readouterr().out
    assert vtt.startswith("WEBVTT\n\n")
    lines = vtt.splitlines()
    cue_texts = [lines[i + 1] for i, line in enumerate(lines) if " --> " in line]
    assert " ".join(cue_texts) == text


def test_output_dir_writes_one_file_per_input(tiny_nemo, clips, tmp_path):
    out = tmp_path / "subs"
    assert inference.main(["--model", str(tiny_nemo), "--output-format", "vtt", "--output-dir", str(out), *clips[:2]]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip0.vtt", "clip1.vtt"]


def test_srt_of_several_inputs_without_output_dir_is_an_option_error(capsys, tiny_nemo, clips):
    assert inference.main(["--model", str(tiny_nemo), "--output-format", "srt", *clips[:2]]) == 2
    assert "--output-dir" in capsys.readouterr().err


def test_random_model_is_labelled(capsys):
    import pathlib
    import tempfile

    from tests.conftest import write_speech

    with tempfile.TemporaryDirectory() as folder:
        clip = write_speech(pathlib.Path(folder) / "c.wav", "hello there", seed=1)
        code = inference.main(["--model", "random:tiny", str(clip)])
        captured = capsys.readouterr()
        assert code == 0 and captured.out.strip()
        assert "random weights: transcripts are not meaningful" in captured.err
        code, doc, _ = run_json(capsys, "--model", "random:tiny", clip)
        assert doc["model"]["note"] == "random weights: transcripts are not meaningful"


# ------------------------------------------------------------------ the real script in a subprocess


def run_script(*argv, env=None):
    return subprocess.run([sys.executable, str(REPO / "inference.py"), *map(str, argv)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_script_in_a_pipe_prints_transcripts_without_progress_bars(tiny_nemo, clips):
    proc = run_script("--model", tiny_nemo, "--device", "cpu", *clips)
    assert proc.returncode == 0, proc.stderr
    assert [line.split(": ", 1)[0] for line in proc.stdout.splitlines()] == clips
    assert "%|" not in proc.stderr and "Traceback" not in proc.stderr
    from common.device.threads import default_threads

    assert proc.stderr.splitlines()[0] == f"device: cpu (requested); {default_threads()} CPU thread(s)"


def test_threads_option_sets_torchs_threads(tiny_nemo, clips):
    proc = run_script("--model", tiny_nemo, "--device", "cpu", "--threads", "1", "--json", clips[0])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["device"]["cpu_threads"] == 1


def test_script_help_shows_defaults():
    proc = run_script("--help")
    assert proc.returncode == 0
    assert "(default: 16)" in proc.stdout and "(default: auto)" in proc.stdout


def test_text_output_shows_the_timestamps_asked_for(capsys, tiny_nemo, clips):
    """--timestamps with text output: under each file's line, one indented line per word
    (segment, char) with its times, the same as the JSON's."""
    code, doc, _ = run_json(capsys, "--model", tiny_nemo, "--timestamps", "all", *clips[:2])
    assert code == 0
    assert inference.main(["--model", str(tiny_nemo), "--timestamps", "all", *clips[:2]]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = []
    for record in doc["results"]:
        expected.append(f"{record['path']}: {record['text']}")
        for kind, stamps in record["timestamps"].items():
            expected += [f"  {kind:<7} [{s['start']:.2f}-{s['end']:.2f}] {s[kind]}" for s in stamps]
    assert lines == expected and any(line.startswith("  word    [") for line in lines)
    assert inference.main(["--model", str(tiny_nemo), "--timestamps", "word", clips[0]]) == 0
    one = capsys.readouterr().out.splitlines()
    words = doc["results"][0]["timestamps"]["word"]
    assert one == [doc["results"][0]["text"]] + [f"  word [{w['start']:.2f}-{w['end']:.2f}] {w['word']}" for w in words]


def run_on_a_terminal(*argv) -> tuple[int, str, str]:
    """The script with stderr on a pseudo-terminal (a person watching) and stdout on a pipe."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm draws nothing in 0 columns
    proc = subprocess.Popen([sys.executable, str(REPO / "inference.py"), *map(str, argv)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the script closed the terminal: it has ended
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read()
    os.close(leader)
    return proc.wait(timeout=600), out, seen.decode(errors="replace")


def test_progress_shows_on_a_terminal_unless_stdout_carries_machine_readable_results(tiny_nemo, clips, tmp_path):
    output = tmp_path / "out.json"
    code, out, err = run_on_a_terminal("--model", tiny_nemo, "--device", "cpu", "--batch-size", "1", "--json",
                                       "--output", output, *clips)
    assert code == 0 and out == "" and json.loads(output.read_text())["summary"]["ok"] == len(clips)
    assert "%|" in err and "file" in err, err  # tqdm: stdout is free, a person watches stderr
    code, out, err = run_on_a_terminal("--model", tiny_nemo, "--device", "cpu", "--batch-size", "1",
                                       "--output-format", "jsonl", *clips)
    assert code == 0 and len(out.splitlines()) == len(clips)
    assert "%|" not in err, err  # the results are on stdout: a bar there would be mixed with them


def test_jsonl_on_stdout_arrives_in_input_order(tiny_nemo, clips):
    """The batched engine runs the longest first; each line still waits for every earlier input's."""
    shortest_last = sorted(clips, key=lambda c: -soundfile.info(c).duration)[::-1]
    proc = run_script("--model", tiny_nemo, "--device", "cpu", "--batch-size", "1", "--output-format", "jsonl",
                      *shortest_last, "missing.wav")
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(line["index"], line["path"]) for line in lines] == list(enumerate([*shortest_last, "missing.wav"]))


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_audio_on_stdin(tmp_path, suffix):
    """`-` (or --audio -) reads the audio bytes piped in, any format the decoder reads: the same
    text as the file, named <stdin>."""
    clip = REPO / "examples" / "demo.wav"
    if suffix == "flac":
        signal, rate = soundfile.read(clip, dtype="int16")
        clip = tmp_path / "demo.flac"
        soundfile.write(clip, signal, rate, subtype="PCM_16")
    expected = run_script("--model", "demo", "--device", "cpu", clip)
    piped = subprocess.run(f"cat {clip} | {sys.executable} inference.py --model demo --device cpu -",
                           shell=True, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert piped.returncode == 0 and expected.returncode == 0, piped.stderr
    assert piped.stdout == expected.stdout and piped.stdout.strip()
    with open(clip, "rb") as audio:
        proc = subprocess.run([sys.executable, "inference.py", "--model", "demo", "--device", "cpu", "--json",
                               "--audio", "-"], stdin=audio, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)["results"][0]
    assert record["path"] == "<stdin>" and record["text"] + "\n" == expected.stdout


def test_empty_stdin_is_an_input_error_before_the_model_loads():
    proc = subprocess.run([sys.executable, "inference.py", "--model", "demo", "-"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 1 and proc.stderr == "error: <stdin>: empty audio (0 bytes)\n"


def test_seed_help_speaks_of_what_each_script_draws():
    seed = re.compile(r"--seed SEED\s+(.*?)\(default", re.S)
    help_text = " ".join(seed.search(run_script("--help").stdout).group(1).split())
    assert help_text == "seed of a fractional --limit's draw"
    accuracy = subprocess.run([sys.executable, "accuracy_run.py", "--help"], capture_output=True, text=True, cwd=REPO)
    assert "bootstrap" in " ".join(seed.search(accuracy.stdout).group(1).split())
