"""Test sets in the field's layouts (LibriSpeech folders, Hugging Face `datasets` folders and
parquet files with embedded audio, Kaldi/WeNet data folders), each made here from the demo clips
and each giving the same records (audio and ground truth) as a NeMo manifest of the same files;
their errors name the file and line; --limit; NeMo result manifests written and read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.inputs.items import InputOptions
from common.inputs.sources import collect_inputs, read_signal
from tests.conftest import REPO

CLIPS = REPO / "demo" / "clips"
N = 4


def _lines() -> list[dict]:
    lines = [json.loads(line) for line in (CLIPS / "manifest.jsonl").read_text().splitlines()[:N]]
    for line in lines:
        line["audio_filepath"] = str(CLIPS / line["audio_filepath"])
    return lines


def _manifest(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _records(items) -> list[tuple[str, np.ndarray]]:
    assert all(item.error is None for item in items), [item.error for item in items]
    return [(item.text, read_signal(item)) for item in items]


def _assert_same(items, expected_items) -> None:
    got, expected = _records(items), _records(expected_items)
    assert [text for text, _ in got] == [text for text, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict:
    """Every layout, made from the same N demo clips, plus the manifest of the files each uses."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile

    root = tmp_path_factory.mktemp("sets")
    lines = _lines()
    made = {"manifest": _manifest(root / "clips.jsonl", lines)}
    # LibriSpeech: <speaker>/<chapter>/<speaker>-<chapter>-<n>.flac and the chapter's trans.txt (upper case)
    chapter = root / "LibriSpeech" / "test-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    flacs = []
    for n, line in enumerate(lines):
        signal, rate = soundfile.read(line["audio_filepath"], dtype="int16")
        flac = chapter / f"84-121123-{n:04d}.flac"
        soundfile.write(flac, signal, rate, subtype="PCM_16")
        flacs.append(dict(line, audio_filepath=str(flac), text=line["text"].upper()))
    (chapter / "84-121123.trans.txt").write_text(
        "".join(f"84-121123-{n:04d} {line['text'].upper()}\n" for n, line in enumerate(lines)))
    made["librispeech"] = root / "LibriSpeech"
    made["librispeech_manifest"] = _manifest(root / "flacs.jsonl", flacs)
    # Kaldi/WeNet: wav.scp (one path relative to the working folder's... the data folder's parent) and text
    kaldi = root / "data" / "test"
    kaldi.mkdir(parents=True)
    scp = [f"utt{n} {line['audio_filepath']}" for n, line in enumerate(lines)]
    (kaldi / "wav.scp").write_text("\n".join(scp) + "\n")
    (kaldi / "text").write_text("".join(f"utt{n} {line['text']}\n" for n, line in enumerate(lines)))
    made["kaldi"] = kaldi
    # Hugging Face datasets: the audio column holds the file's bytes (as the Open ASR leaderboard's data)
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")})
    table = pa.table({"audio": [{"bytes": Path(line["audio_filepath"]).read_bytes(),
                                 "path": os.path.basename(line["audio_filepath"])} for line in lines],
                      "text": [line["text"] for line in lines]}, schema=features.arrow_schema)
    datasets.Dataset(table).save_to_disk(str(root / "saved"))
    made["hf"] = root / "saved"
    pq.write_table(table, root / "test.parquet")
    made["parquet"] = root / "test.parquet"
    # a parquet file as pandas writes it: plain struct column, another text column name
    other = pa.table({"recording": table.column("audio"), "transcription": table.column("text")})
    pq.write_table(other, root / "plain.parquet")
    made["plain_parquet"] = root / "plain.parquet"
    # as the hub keeps a dataset: <repo>/data/test-00000-of-00001.parquet; and a DatasetDict saved to disk
    (root / "hub" / "data").mkdir(parents=True)
    pq.write_table(table, root / "hub" / "data" / "test-00000-of-00001.parquet")
    made["hub"] = root / "hub"
    datasets.DatasetDict({"test": datasets.Dataset(table)}).save_to_disk(str(root / "saved_dict"))
    made["dataset_dict"] = root / "saved_dict"
    return made


@pytest.mark.parametrize("layout", ["librispeech", "kaldi", "hf", "parquet"])
def test_each_layout_gives_the_records_of_a_manifest_of_the_same_files(sets, layout):
    expected = collect_inputs([str(sets["librispeech_manifest" if layout == "librispeech" else "manifest"])])
    items = collect_inputs([str(sets[layout])])
    assert len(items) == N
    _assert_same(items, expected)
    if layout in ("librispeech", "kaldi"):  # files stay files, read where they lie
        assert [i.path for i in items] == [i.path for i in expected]
    else:
        assert [i.path for i in items] == [f"{sets[layout]}#{n}" for n in range(N)]
        assert all(i.embedded is not None for i in items)
    # the layout can be named instead of detected
    named = collect_inputs([str(sets[layout])], InputOptions(layout="hf" if layout == "parquet" else layout))
    assert [i.path for i in named] == [i.path for i in items]


def test_hub_folders_dataset_dicts_and_kaldi_relative_paths(sets, tmp_path):
    expected = collect_inputs([str(sets["manifest"])])
    items = collect_inputs([str(sets["hub"])])
    _assert_same(items, expected)
    assert items[0].path == f"{sets['hub']}/data/test-00000-of-00001.parquet#0"
    items = collect_inputs([str(sets["dataset_dict"])])
    _assert_same(items, expected)
    assert items[0].path == f"{sets['dataset_dict']}/test#0"
    # a Kaldi recipe: data/test/wav.scp with paths relative to the recipe folder, run from anywhere
    recipe = tmp_path / "s5"
    (recipe / "data" / "test").mkdir(parents=True)
    (recipe / "wav").mkdir()
    for n, line in enumerate(_lines()):
        (recipe / "wav" / f"u{n}.wav").write_bytes(Path(line["audio_filepath"]).read_bytes())
    (recipe / "data" / "test" / "wav.scp").write_text("".join(f"u{n} wav/u{n}.wav\n" for n in range(N)))
    (recipe / "data" / "test" / "text").write_text("".join(f"u{n} {line['text']}\n" for n, line in enumerate(_lines())))
    _assert_same(collect_inputs([str(recipe / "data" / "test" / "wav.scp")]), expected)


def test_columns_are_detected_or_named(sets):
    expected = collect_inputs([str(sets["manifest"])])
    items = collect_inputs([str(sets["plain_parquet"])])  # 'transcription' is a usual name; 'recording' is not
    assert len(items) == 1 and "no audio column found" in items[0].error and "--audio-column" in items[0].error
    assert "recording, transcription" in items[0].error
    items = collect_inputs([str(sets["plain_parquet"])], InputOptions(audio_column="recording"))
    _assert_same(items, expected)
    items = collect_inputs([str(sets["parquet"])], InputOptions(text_column="words"))
    assert len(items) == 1 and items[0].error.startswith(f"{sets['parquet']}: no column 'words' (--text-column)")


def test_bad_lines_name_their_file_and_line_and_the_rest_still_load(sets, tmp_path):
    import shutil

    speech = shutil.copytree(sets["librispeech"], tmp_path / "LibriSpeech")
    transcripts = next(speech.rglob("*.trans.txt"))
    text = transcripts.read_text().splitlines()
    text.insert(1, "84-121123-0099 NOT THERE")
    text.insert(2, "84-121123-0098")
    transcripts.write_text("\n".join(text) + "\n")
    items = collect_inputs([str(speech)])
    errors = [i.error for i in items if i.error]
    assert errors[0] == f"{transcripts}:2: audio file not found: {transcripts.parent / '84-121123-0099'}.flac"
    assert errors[1] == f"{transcripts}:3: expected '<utterance-id> TEXT'"
    assert sum(i.error is None for i in items) == N

    kaldi = Path(shutil.copytree(sets["kaldi"], tmp_path / "kaldi"))
    scp = (kaldi / "wav.scp").read_text().splitlines()
    scp.insert(1, "uttpipe sox a.flac -t wav - |")
    scp.insert(2, "uttmissing missing/x.wav")
    (kaldi / "wav.scp").write_text("\n".join(scp) + "\n")
    (kaldi / "text").write_text("\n".join((kaldi / "text").read_text().splitlines()[1:]) + "\n")  # utt0 has no text
    items = collect_inputs([str(kaldi)])
    assert items[1].error == f"{kaldi}/wav.scp:2: a command ('... |') is not supported; give the audio file's path"
    assert items[2].error.startswith(f"{kaldi}/wav.scp:3: audio file not found: tried ")
    assert items[0].error is None and items[0].text is None  # no truth for it: its WER is left out, not faked
    assert [i.text for i in items[3:]] == [line["text"] for line in _lines()[1:]]


def test_limit_takes_the_first_n_or_a_seeded_share(sets):
    every = collect_inputs([str(sets["kaldi"])])
    assert [i.path for i in collect_inputs([str(sets["kaldi"])], InputOptions(limit=2))] == [i.path for i in every[:2]]
    half = [i.path for i in collect_inputs([str(sets["kaldi"])], InputOptions(limit=0.5, seed=3))]
    assert len(half) == 2 and half == [i.path for i in collect_inputs([str(sets["kaldi"])], InputOptions(limit=0.5, seed=3))]
    assert half == sorted(half, key=[i.path for i in every].index)  # input order kept
    draws = {tuple(i.path for i in collect_inputs([str(sets["kaldi"])], InputOptions(limit=0.5, seed=s)))
             for s in range(8)}
    assert len(draws) > 1


def run(script: str, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *map(str, argv)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_nemo_result_manifest_both_ways(sets, tmp_path):
    """inference.py writes NeMo's result manifest (input lines + pred_text), the same for a parquet
    file as for the manifest of its files; NeMo's own evaluation reads it; accuracy_run.py takes it
    as the reference, so no reference pass runs."""
    from nemo.collections.asr.parts.utils.eval_utils import cal_write_wer

    lines = [dict(line, speaker="demo") for line in _lines()]  # an extra field NeMo keeps
    manifest = _manifest(tmp_path / "in.jsonl", lines)
    predictions = tmp_path / "pred.jsonl"
    proc = run("inference.py", "--model", "demo", "--device", "cpu", "--timestamps", "word",
               "--output-format", "nemo-manifest", "--output", predictions, manifest, sets["parquet"])
    assert proc.returncode == 0, proc.stderr
    written = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(written) == 2 * N
    for line, out in zip(lines, written[:N]):
        assert {k: out[k] for k in line} == line and isinstance(out["pred_text"], str) and out["word"]
    assert [w["pred_text"] for w in written[N:]] == [w["pred_text"] for w in written[:N]]
    assert [w["text"] for w in written[N:]] == [line["text"] for line in lines]
    assert written[N]["audio_filepath"] == f"{sets['parquet']}#0"

    head = tmp_path / "head.jsonl"
    head.write_text("".join(json.dumps(w) + "\n" for w in written[:N]))
    _, totals, _ = cal_write_wer(pred_manifest=str(head), output_filename=str(tmp_path / "eval.jsonl"))
    assert 0.0 <= totals["wer"] < 0.5

    output, page = tmp_path / "acc.json", tmp_path / "acc.html"
    proc = run("accuracy_run.py", "--model", "demo", "--device", "cpu", "--reference-results", head,
               "--output", output, "--html", page, manifest)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    document = json.loads(output.read_text())
    files = document["accuracy"]["files"]
    assert [f["reference"]["text"] for f in files] == [w["pred_text"] for w in written[:N]]
    assert all(f["match"] for f in files) and all(f["reference"]["latency"] is None for f in files)
    truth = document["accuracy"]["aggregate"]["truth"]["confidence"]
    assert truth["device"]["wer"]["ci95"][0] <= truth["device"]["wer"]["value"] <= truth["device"]["wer"]["ci95"][1]
    assert truth["difference"]["wer"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert document["normalizer"].startswith("whisper_normalizer.english.EnglishTextNormalizer")
    assert "95% bootstrap intervals" in proc.stdout
    assert "PASS" in page.read_text() and "<svg" not in page.read_text()  # plots are embedded images


def test_each_layout_keeps_the_test_sets_ids(sets, tmp_path):
    """Kaldi and LibriSpeech utterance ids, a dataset's id column, a manifest's `id`: carried on
    each input, so that results can be joined back to the test set."""
    import pyarrow.parquet as pq

    assert [i.id for i in collect_inputs([str(sets["librispeech"])])] == [f"84-121123-{n:04d}" for n in range(N)]
    assert [i.id for i in collect_inputs([str(sets["kaldi"])])] == [f"utt{n}" for n in range(N)]
    table = pq.read_table(sets["parquet"])
    for column, values in (("utt_id", [f"row-{n}" for n in range(N)]), ("id", list(range(7, 7 + N)))):
        pq.write_table(table.append_column(column, [values]), tmp_path / f"{column}.parquet")
        assert [i.id for i in collect_inputs([str(tmp_path / f"{column}.parquet")])] == values
    assert [i.id for i in collect_inputs([str(sets["parquet"])])] == [None] * N  # no id column: none made up
    manifest = _manifest(tmp_path / "ids.jsonl", [dict(line, id=f"m{n}") for n, line in enumerate(_lines())])
    assert [i.id for i in collect_inputs([str(manifest)])] == [f"m{n}" for n in range(N)]


def test_ids_and_truth_reach_json_and_nemo_manifests_as_nemos_eval_reads_them(sets, tmp_path):
    """Records (JSON) and NeMo result manifests carry each input's `id`; LibriSpeech's upper-case
    truth is written lower-cased as `text`, so NeMo's speech_to_text_eval (which does not fold
    case) scores the model's words, not its case."""
    from nemo.collections.asr.parts.utils.eval_utils import cal_write_wer

    predictions, document = tmp_path / "pred.jsonl", tmp_path / "out.json"
    proc = run("inference.py", "--model", "demo", "--device", "cpu", "--output-format", "nemo-manifest",
               "--output", predictions, sets["librispeech"], sets["kaldi"])
    assert proc.returncode == 0, proc.stderr
    written = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [w["id"] for w in written] == [f"84-121123-{n:04d}" for n in range(N)] + [f"utt{n}" for n in range(N)]
    truths = [line["text"] for line in _lines()]
    assert [w["text"] for w in written] == [t.lower() for t in truths] + truths  # Kaldi's cased truth kept
    _, totals, _ = cal_write_wer(pred_manifest=str(predictions), output_filename=str(tmp_path / "eval.jsonl"))
    assert totals["wer"] < 0.5, totals  # upper-case truth against the model's lower case reads 1.0
    proc = run("inference.py", "--model", "demo", "--device", "cpu", "--json", "--output", document, sets["kaldi"])
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(document.read_text())["results"]] == [f"utt{n}" for n in range(N)]
