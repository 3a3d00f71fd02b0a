"""accuracy_run.py: agreement when there is agreement, a real mismatch detected when there is
one, ground-truth WER after normalization, and errors per file."""

from __future__ import annotations

import json

import pytest

import accuracy_run
import inference
from common.measure.compare import error_rates, normalize_english, timestamp_drift, word_differences


def levenshtein(a: list, b: list) -> int:
    """Independent edit distance, to check jiwer's WER without using jiwer."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def run(capsys, *argv):
    code = accuracy_run.main([*map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def other_seed_nemo(tmp_path_factory):
    from common.model.random_models import save_random_model

    return save_random_model("tiny", tmp_path_factory.mktemp("model2") / "tiny-seed1.nemo", seed=1)


def test_cpu_vs_cpu_agrees_completely(capsys, tiny_nemo, nemo_model, clips, tmp_path):
    """The agreeing report. Both sides are the same model on the same device here, so agreement
    proves nothing by itself: the texts are checked against NeMo's own transcribe() (the bf16 test
    below shows that the two sides are computed apart)."""
    out_file = tmp_path / "results.json"
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--output", out_file, *clips)
    assert code == 0
    doc = json.loads(out_file.read_text())
    agg = doc["accuracy"]["aggregate"]
    assert agg["compared"] == len(clips) and agg["match_rate"] == 1.0
    assert agg["wer"] == 0.0 and agg["cer"] == 0.0
    assert agg["drift"]["start_max"] == 0.0 and agg["drift"]["end_max"] == 0.0 and agg["drift"]["aligned_words"] > 0
    assert doc["accuracy"]["verdict"] == {"passed": True, "failures": [],
                                          "thresholds": {"min_match": 1.0, "max_wer": 0.0}}
    expected = [h.text for h in nemo_model.transcribe(clips, batch_size=1, verbose=False)]
    assert [entry["reference"]["text"] for entry in doc["accuracy"]["files"]] == expected
    for entry in doc["accuracy"]["files"]:
        assert entry["match"] and entry["reference"]["text"] == entry["device"]["text"]
        assert entry["reference"]["words"] and entry["device"]["words"] == entry["reference"]["words"]
        assert entry["device"]["rtfx"] == pytest.approx(entry["duration"] / entry["device"]["latency"], rel=1e-2)
    assert doc["environment"]["torch"] and doc["target"]["dtype"] == "fp32"
    assert out.splitlines()[-1].startswith("PASS: 4/4 files match exactly")


def test_a_different_model_is_a_real_mismatch(capsys, tiny_nemo, other_seed_nemo, clips):
    code, out, _ = run(capsys, "--model", tiny_nemo, "--reference-model", other_seed_nemo, "--device", "cpu",
                       "--json", *clips[:2])
    doc = json.loads(out)
    assert code == 1
    files = doc["accuracy"]["files"]
    for entry in files:
        ref, dev = entry["reference"]["text"].split(), entry["device"]["text"].split()
        assert ref != dev and not entry["match"]
        assert entry["wer"] == pytest.approx(levenshtein(ref, dev) / len(ref))
        assert entry["wer"] > 0 and entry["differences"]
    total_errors = sum(levenshtein(f["reference"]["text"].split(), f["device"]["text"].split()) for f in files)
    total_words = sum(len(f["reference"]["text"].split()) for f in files)
    assert doc["accuracy"]["aggregate"]["wer"] == pytest.approx(total_errors / total_words)
    failures = doc["accuracy"]["verdict"]["failures"]
    assert any("--min-match" in f for f in failures) and any("--max-wer" in f for f in failures)
    assert doc["summary"].startswith("FAIL:")

    code, out, _ = run(capsys, "--model", tiny_nemo, "--reference-model", other_seed_nemo, "--device", "cpu",
                       "--min-match", "0", "--max-wer", "100", *clips[:2])
    assert code == 0 and out.splitlines()[-1].startswith("PASS:")
    assert "first differences (reference -> cpu)" in out


def test_bf16_target_and_fp32_reference_are_computed_apart(capsys, tiny_nemo, clips):
    """The target side really runs at bf16 and the reference at fp32: each equals a separate
    inference.py run at its precision, and on random weights bf16 changes the text of some clip
    (a target run at fp32, or a side copied from the other, would agree everywhere)."""
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--dtype", "bf16", "--json",
                       "--min-match", "0", "--max-wer", "100", *clips)
    doc = json.loads(out)
    assert code == 0 and doc["target"]["dtype"] == "bf16"
    files = doc["accuracy"]["files"]

    def separately(dtype):
        assert inference.main(["--model", str(tiny_nemo), "--device", "cpu", "--engine", "nemo", "--batch-size", "1",
                               "--dtype", dtype, "--json", *clips]) == 0
        return [r["text"] for r in json.loads(capsys.readouterr().out)["results"]]

    assert [f["reference"]["text"] for f in files] == separately("fp32")
    assert [f["device"]["text"] for f in files] == separately("bf16")
    assert any(f["device"]["text"] != f["reference"]["text"] for f in files), "bf16 changed nothing: did it run?"
    agg = doc["accuracy"]["aggregate"]
    assert agg["match_rate"] == agg["exact_matches"] / agg["compared"] < 1
    for entry in files:
        ref, dev = entry["reference"]["text"].split(), entry["device"]["text"].split()
        assert entry["match"] == (ref == dev)
        assert entry["wer"] == pytest.approx(levenshtein(ref, dev) / len(ref))


def test_ground_truth_from_truth_text_and_manifest(capsys, tiny_nemo, clips, tmp_path):
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--json",
                       "--truth-text", "Hello, World!", clips[0])
    doc = json.loads(out)
    entry = doc["accuracy"]["files"][0]
    expected = error_rates("hello world", normalize_english(entry["device"]["text"]))
    assert entry["truth"]["device"] == expected and doc["accuracy"]["aggregate"]["truth"]["files"] == 1
    assert "whisper_normalizer" in doc["normalizer"]

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": c, "text": f"text {n}"}) + "\n"
                                for n, c in enumerate(clips[:2])))
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--json", manifest)
    doc = json.loads(out)
    assert [f["truth"]["text"] for f in doc["accuracy"]["files"]] == ["text 0", "text 1"]


@pytest.mark.parametrize("truth, hypothesis, wer", [
    ("Well, I don't wish to see it.", "well i do not wish to see it", 0.0),
    ("It is twenty-five percent.", "it's 25%", 0.0),
    ("HELLO world", "hello, world!", 0.0),
    ("the cat sat on the mat", "the cat sat on a mat", 1 / 6),
    ("one two three", "123", 0.0),  # numbers become digits, as the leaderboard scores them
    ("the old portrait", "the portrait", 1 / 3),
])
def test_normalized_ground_truth_wer(truth, hypothesis, wer):
    assert error_rates(normalize_english(truth), normalize_english(hypothesis))["wer"] == pytest.approx(wer)


def test_word_differences_and_drift():
    diffs = word_differences("a b c d e", "a x c d")
    assert diffs == [{"type": "substitute", "position": 1, "reference": "b", "device": "x"},
                     {"type": "delete", "position": 4, "reference": "e", "device": ""}]
    ref = [{"word": "a", "start": 0.0, "end": 0.2}, {"word": "b", "start": 0.3, "end": 0.5},
           {"word": "c", "start": 0.6, "end": 0.9}]
    dev = [{"word": "a", "start": 0.08, "end": 0.2}, {"word": "c", "start": 0.6, "end": 1.06}]
    drift = timestamp_drift(ref, dev)
    assert drift["aligned_words"] == 2
    assert drift["start_max"] == pytest.approx(0.08) and drift["end_max"] == pytest.approx(0.16)
    assert drift["start_mean"] == pytest.approx(0.04)


def test_bad_file_is_an_error_for_that_file(capsys, tiny_nemo, clips, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--json", clips[0], empty)
    doc = json.loads(out)
    assert code == 1
    files = doc["accuracy"]["files"]
    assert files[0]["match"] and "empty file" in files[1]["error"]
    assert doc["accuracy"]["verdict"]["failures"] == ["1 file(s) could not be compared"]


def test_a_file_that_fails_to_transcribe_first_is_its_own_error(capsys, monkeypatch, tiny_nemo, clips):
    """The first file is also the warm-up's: when the model fails on it (NeMo 2.2 does on some
    degenerate outputs, raising from its timestamp code), that file gets the error and the rest
    are still compared. The failure is injected into transcription by the file's length."""
    import soundfile

    from common.measure import accuracy

    failing = soundfile.info(clips[0]).frames
    real = accuracy.transcribe_signals

    def fails_on_the_first_clip(loaded, signals, options, *args, **kwargs):
        if len(signals[0]) == failing:
            raise ValueError("offsets and tokens have to be of the same length")
        return real(loaded, signals, options, *args, **kwargs)

    monkeypatch.setattr(accuracy, "transcribe_signals", fails_on_the_first_clip)
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--json", clips[0], clips[1])
    files = json.loads(out)["accuracy"]["files"]
    assert code == 1
    assert clips[0] in files[0]["error"] and "ValueError: offsets and tokens" in files[0]["error"]
    assert files[1]["match"] and files[1]["reference"]["text"]


def test_a_signal_inside_a_library_error_stops_the_run_not_one_file(capsys, monkeypatch, tiny_nemo, clips, tmp_path):
    """A Ctrl-C that lands in a library's try/finally comes out as the library's own error (its
    context the KeyboardInterrupt): per-file isolation must stop the run with it, keeping what is
    finished, not record it as that file's failure and go on."""
    import soundfile

    from common.measure import accuracy

    interrupted = soundfile.info(clips[1]).frames
    real = accuracy.transcribe_signals

    def interrupted_on_the_second_clip(loaded, signals, options, *args, **kwargs):
        if len(signals[0]) == interrupted:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise RuntimeError("unfreeze() of what was never frozen")
        return real(loaded, signals, options, *args, **kwargs)

    monkeypatch.setattr(accuracy, "transcribe_signals", interrupted_on_the_second_clip)
    output = tmp_path / "accuracy.json"
    code, _, err = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--warmup", "0", "--output", output,
                       clips[0], clips[1], clips[2])
    assert code == 130 and "interrupted" in err and not output.exists()
    kept = [json.loads(line) for line in (tmp_path / "accuracy.json.partial.jsonl").read_text().splitlines()]
    assert [r["record"]["path"] for r in kept if "record" in r] == [clips[0]]


def test_setup_errors_exit_2(capsys, tiny_nemo, clips):
    code, _, err = run(capsys, "--model", tiny_nemo, "--device", "npu:0", clips[0])
    assert code == 2 and err.strip().startswith("error: --device npu:")
    code, _, err = run(capsys, "--model", tiny_nemo, "--truth-text", "x", *clips[:2])
    assert code == 2 and "--truth-text" in err
