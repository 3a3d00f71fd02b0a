"""accuracy_run.py: agreement when there is agreement, a real mismatch detected when there is
one, ground-truth WER after normalization, and errors per file."""

from __future__ import annotations

import json

import pytest

import accuracy_run
import inference
from common.measure.compare import error_rates, normalize_english, timestamp_drift, word_differences
from tests.conftest import REPO


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
    assert out.splitlines()[-1].startswith("PASS: device vs reference: 4/4 files match exactly")


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
    code, _, err = run(capsys, "--reference", "nowhere", clips[0])
    assert code == 2 and err == "error: --reference 'nowhere': not one of auto, cpu, npu, npu:N, cuda, cuda:N, or none\n"


# ------------------------------------------------------------- one pass against the truth


@pytest.fixture(scope="module")
def truth_manifest(clips, tmp_path_factory):
    """The clips with what each says as its 'text' (LibriSpeech-style upper case, so that the
    normalizer has something to do) and an utterance id."""
    from tests.conftest import SENTENCES

    manifest = tmp_path_factory.mktemp("truth") / "truth.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": clip, "text": sentence.upper(), "id": f"utt-{n}"}) + "\n"
                                for n, (clip, sentence) in enumerate(zip(clips, SENTENCES))))
    return manifest


class EncoderPasses:
    """Counts the real encoder's forward passes (a global module hook on NeMo's ConformerEncoder,
    nothing replaced): how many times the model ran."""

    def __enter__(self):
        import torch

        self.count = 0

        def count(module, inputs, output):
            if type(module).__name__ == "ConformerEncoder":
                self.count += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(count)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def truth_rates(truths: list[str], hypotheses: list[str]) -> dict:
    """jiwer's corpus WER and CER after the project's normalizer."""
    import jiwer

    truths = [normalize_english(t) for t in truths]
    hypotheses = [normalize_english(h) for h in hypotheses]
    return {"wer": jiwer.wer(truths, hypotheses), "cer": jiwer.cer(truths, hypotheses)}


@pytest.fixture(scope="module")
def truth_only_run(tiny_nemo, truth_manifest, tmp_path_factory):
    """accuracy_run.py --reference none on the truth manifest: its exit code, console table,
    results document and how many times the encoder ran."""
    output = tmp_path_factory.mktemp("truth-run") / "truth.json"
    with EncoderPasses() as passes:
        code = accuracy_run.main(["--model", str(tiny_nemo), "--device", "cpu", "--reference", "none", "--warmup", "0",
                                  "--output", str(output), str(truth_manifest)])
    return code, json.loads(output.read_text()), passes.count, output


def test_reference_none_runs_the_model_once_and_scores_it_against_the_truth(capsys, tiny_nemo, truth_manifest,
                                                                             truth_only_run, clips):
    code, doc, passes, _ = truth_only_run
    assert code == 0
    assert passes == len(clips)  # one encoder pass per file: no reference side, no warm-up
    assert doc["reference"] is None and doc["reference_model"] is None
    files = doc["accuracy"]["files"]
    assert all(set(f) >= {"device", "truth"} and "reference" not in f and "match" not in f for f in files)
    assert [f["id"] for f in files] == [f"utt-{n}" for n in range(len(clips))]  # results join back to the test set
    expected = truth_rates([f["truth"]["text"] for f in files], [f["device"]["text"] for f in files])
    assert expected["wer"] > 0  # random weights: the figure is not a trivial 0
    (row,) = doc["accuracy"]["headline"]
    assert row["comparison"] == "device vs truth" and row["files"] == len(clips)
    assert row["wer"]["value"] == pytest.approx(expected["wer"])
    assert row["cer"]["value"] == pytest.approx(expected["cer"])
    for figure in (row["wer"], row["cer"]):
        assert figure["ci95"][0] <= figure["value"] <= figure["ci95"][1]
    assert doc["accuracy"]["aggregate"]["truth"]["confidence"]["bootstrap"]["resamples"] == 1000
    assert doc["summary"].startswith(f"PASS: device vs truth ({len(clips)} file(s)): WER {expected['wer']:.4f}")

    # the same model with a reference: two passes per file, and the same device side against the truth
    with EncoderPasses() as passes:
        code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--warmup", "0", "--json", truth_manifest)
    both = json.loads(out)
    assert code == 0 and passes.count == 2 * len(clips)
    assert [f["device"]["text"] for f in both["accuracy"]["files"]] == [f["device"]["text"] for f in files]
    assert [r["comparison"] for r in both["accuracy"]["headline"]] == ["device vs reference", "device vs truth",
                                                                      "reference vs truth"]
    assert both["accuracy"]["headline"][1]["wer"] == row["wer"]


def test_reference_none_console_names_the_comparison_and_the_worst_utterances(truth_only_run):
    from common.report.tables import accuracy_table

    _, doc, _, _ = truth_only_run
    table = accuracy_table(doc)
    assert "reference: none" in table and "device vs reference" not in table and "dev vs ref" not in table
    headline = next(line for line in table.splitlines() if line.startswith("device vs truth "))
    assert f"{doc['accuracy']['headline'][0]['wer']['value']:.4f} [" in headline
    worst = doc["accuracy"]["aggregate"]["truth"]["worst"]
    assert worst and worst[0]["word_errors"] == max(f["truth"]["counts"]["device"]["word_errors"]
                                                    for f in doc["accuracy"]["files"])
    assert "worst utterances, device vs truth" in table
    for entry in worst[:5]:
        assert entry["id"].startswith("utt-") and f"  {entry['id']}: WER {entry['wer']:.4f}" in table
        assert f"    truth:  {normalize_english(entry['truth'])}" in table
        assert f"    device: {normalize_english(entry['device'])}" in table
    assert table.splitlines()[-1] == doc["summary"]


def test_the_console_with_a_reference_names_every_comparison(capsys, tiny_nemo, truth_manifest):
    code, out, _ = run(capsys, "--model", tiny_nemo, "--device", "cpu", "--dtype", "bf16", "--warmup", "0",
                       "--min-match", "0", "--max-wer", "100", truth_manifest)
    assert code == 0
    rows = {line.split("  ")[0]: line for line in out.splitlines()
            if line.startswith(("device vs reference ", "device vs truth ", "reference vs truth "))}
    assert set(rows) == {"device vs reference", "device vs truth", "reference vs truth"}
    assert "device - reference, both against the truth (paired): WER" in out
    assert "95% bootstrap intervals" in out
    summary = out.splitlines()[-1]
    assert summary.startswith("PASS: device vs reference: ") and "; device vs truth (4 file(s)): WER " in summary


def test_max_truth_wer_sets_the_exit_code(capsys, tiny_nemo, truth_manifest, truth_only_run):
    _, doc, _, _ = truth_only_run
    wer = doc["accuracy"]["headline"][0]["wer"]["value"]
    common = ["--model", tiny_nemo, "--device", "cpu", "--warmup", "0", "--json", truth_manifest]
    code, out, _ = run(capsys, *common, "--reference", "none", "--max-truth-wer", wer * 0.99)
    verdict = json.loads(out)["accuracy"]["verdict"]
    assert code == 1 and verdict["failures"] == [f"device vs truth: WER {wer:.4f} > --max-truth-wer {wer * 0.99:g}"]
    code, out, _ = run(capsys, *common, "--reference", "none", "--max-truth-wer", wer * 1.01)
    assert code == 0 and json.loads(out)["accuracy"]["verdict"]["thresholds"] == {"max_truth_wer": wer * 1.01}

    # with a reference both verdicts count: the devices agree (cpu against cpu), the truth fails
    code, out, _ = run(capsys, *common, "--max-truth-wer", wer * 0.99)
    verdict = json.loads(out)["accuracy"]["verdict"]
    assert code == 1 and [f.split(":")[0] for f in verdict["failures"]] == ["device vs truth"]
    code, out, _ = run(capsys, *common, "--max-truth-wer", wer * 1.01)
    assert code == 0 and json.loads(out)["accuracy"]["verdict"]["thresholds"] == {
        "min_match": 1.0, "max_wer": 0.0, "max_truth_wer": wer * 1.01}


def test_reference_none_without_truth_fails_before_the_model_loads(clips, tmp_path):
    """In a fresh interpreter, so that NeMo not being imported shows the model never loaded."""
    import subprocess
    import sys

    code = ("import sys, json, accuracy_run\n"
            "code = accuracy_run.main(['--model', 'random:tiny', '--device', 'cpu', '--reference', 'none', "
            f"{clips[0]!r}])\n"
            "print(json.dumps([code, 'nemo' in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout) == [2, False], proc.stderr
    assert proc.stderr.startswith("error: --reference none: no input has a ground truth")
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("option", ["--reference-results", "--reference-model"])
def test_reference_none_refuses_the_reference_options(capsys, truth_manifest, tmp_path, option):
    code, _, err = run(capsys, "--reference", "none", option, tmp_path / "x.json", truth_manifest)
    assert code == 2 and err.startswith(f"error: {option}: needs a reference; --reference none")


def test_an_interrupted_truth_only_run_resumes(capsys, monkeypatch, tiny_nemo, truth_manifest, truth_only_run, clips,
                                               tmp_path):
    """Stopped on the third file, the run keeps the first two; --resume runs only the rest (the
    encoder counted) and publishes what one uninterrupted run publishes."""
    import soundfile

    from common.measure import accuracy

    _, complete, _, _ = truth_only_run
    stop_at = soundfile.info(clips[2]).frames
    real = accuracy.transcribe_signals

    def interrupted_on_the_third_clip(loaded, signals, options, *args, **kwargs):
        if len(signals[0]) == stop_at:
            raise KeyboardInterrupt
        return real(loaded, signals, options, *args, **kwargs)

    output = tmp_path / "truth.json"
    argv = ["--model", tiny_nemo, "--device", "cpu", "--reference", "none", "--warmup", "0", "--output", output,
            truth_manifest]
    monkeypatch.setattr(accuracy, "transcribe_signals", interrupted_on_the_third_clip)
    code, _, err = run(capsys, *argv)
    assert code == 130 and not output.exists()
    monkeypatch.setattr(accuracy, "transcribe_signals", real)
    with EncoderPasses() as passes:
        code, _, err = run(capsys, *argv, "--resume")
    assert code == 0 and "resuming: 2 of 4 input(s) already done" in err, err
    assert passes.count == len(clips) - 2
    resumed = json.loads(output.read_text())
    assert resumed["accuracy"]["headline"] == complete["accuracy"]["headline"]
    assert [(f["id"], f["device"]["text"]) for f in resumed["accuracy"]["files"]] == \
        [(f["id"], f["device"]["text"]) for f in complete["accuracy"]["files"]]
    assert not (tmp_path / "truth.json.partial.jsonl").exists()


def test_resume_help_names_only_options_the_script_has():
    import inference

    def resume_help(parser):
        return next(a.help for a in parser._actions if "--resume" in a.option_strings)

    assert "--output-dir" not in resume_help(accuracy_run.build_parser())
    assert "beside --output" in resume_help(accuracy_run.build_parser())
    assert "--output-dir" in resume_help(inference.build_parser())  # a script that has it still says so


def test_reference_none_under_torchrun_equals_one_process(capsys, tmp_path):
    """Two ranks (torchrun on this CPU) share the files; rank 0 publishes what one process
    publishes, with a device-vs-truth verdict per card, and --max-truth-wer fails the launch."""
    from tests.test_ranks import DEMO_CLIPS, torchrun

    manifest = tmp_path / "demo.jsonl"
    truth = {json.loads(line)["audio_filepath"]: json.loads(line)["text"]
             for line in (REPO / "demo" / "clips" / "manifest.jsonl").read_text().splitlines()}
    manifest.write_text("".join(json.dumps({"audio_filepath": clip, "text": truth[clip.rsplit("/", 1)[-1]]}) + "\n"
                                for clip in DEMO_CLIPS[:6]))
    code, out, _ = run(capsys, "--model", "demo", "--device", "cpu", "--reference", "none", "--warmup", "0", "--json",
                       manifest)
    single = json.loads(out)
    assert code == 0 and single["accuracy"]["headline"][0]["wer"]["value"] > 0

    output = tmp_path / "ranks.json"
    proc = torchrun("accuracy_run.py", "--model", "demo", "--device", "cpu", "--reference", "none", "--warmup", "0",
                    "--max-truth-wer", "0", "--output", output, manifest)
    assert proc.returncode != 0  # rank 0's verdict: the truth WER is above 0
    ranked = json.loads(output.read_text())
    assert ranked["accuracy"]["headline"] == single["accuracy"]["headline"]
    assert [c["card"] for c in ranked["accuracy"]["cards"]] == ["cpu/rank0", "cpu/rank1"]
    assert all(c["headline"][0]["comparison"] == "device vs truth" for c in ranked["accuracy"]["cards"])
    assert ranked["accuracy"]["verdict"]["failures"][0].startswith("device vs truth: WER ")


def test_the_accuracy_check_runs_what_inference_runs(capsys, tiny_nemo, truth_manifest, truth_only_run):
    """The figures describe inference.py's output: the same engine, and file by file the same texts
    as inference.py transcribing one file a call."""
    _, doc, _, _ = truth_only_run
    assert doc["target"]["engine"] == inference.build_parser().parse_args(["a.wav"]).engine
    assert inference.main(["--model", str(tiny_nemo), "--device", "cpu", "--batch-size", "1", "--json",
                           str(truth_manifest)]) == 0
    transcribed = json.loads(capsys.readouterr().out)["results"]
    assert [f["text"] for f in transcribed] == [f["device"]["text"] for f in doc["accuracy"]["files"]]
