"""Clips under a second, and every clip's timestamps: whatever the engine and the batch, the
toolkit gives what NeMo gives transcribing the file path alone (its own loader, which does not
pad short clips; batch size 1, where NeMo's end times do not depend on batch mates, #16097),
with times within [0, duration]."""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path

import pytest
import soundfile

import inference
from common.engine.records import TIMESTAMP_KINDS
from common.model.demo_model import DEMO_PATH
from tests.conftest import REPO
from tests.test_inference import in_clip

SHORT_SECONDS = (0.1, 0.15, 0.3, 0.5, 0.65, 0.9)
DEMO_CLIPS = sorted((REPO / "demo" / "clips").glob("*.wav"))
# Sub-second cuts of shipped clips holding their first word, and what the demo model hears in
# them from the file (NeMo's in-memory padding made them "cheap", "fled", "david").
DEMO_WORDS = (("heldout_4.wav", 0.45, "checked"), ("unseen_voice_2.wav", 0.45, "flags"),
              ("unseen_voice_0.wav", 0.37, "daniel"))


def cut(source, folder, start: float, seconds: float) -> str:
    signal, rate = soundfile.read(str(source), dtype="float32")
    path = folder / f"{source.stem}-{start}-{seconds}.wav"
    soundfile.write(path, signal[int(start * rate): int((start + seconds) * rate)], rate)
    return str(path)


def transcribe(capsys, model, engine: str, batch_size: int, paths: list[str]) -> list[dict]:
    """The toolkit's records (text and timestamps of every kind) for `paths`, in input order."""
    code = inference.main(["--model", str(model), "--device", "cpu", "--engine", engine, "--batch-size",
                           str(batch_size), "--timestamps", "all", "--json", *paths])
    assert code == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["path"] for r in results] == paths
    return [{"text": r["text"], "timestamps": r["timestamps"]} for r in results]


def nemo_alone(model, path: str) -> dict:
    """NeMo transcribing the file itself, alone, as a toolkit record (times clamped to the clip)."""
    hyps = model.transcribe([path], batch_size=1, timestamps=True, verbose=False)
    hyp = (hyps[0] if isinstance(hyps, tuple) else hyps)[0]
    return {"text": hyp.text, "timestamps": {
        kind: [{kind: "".join(e[kind]) if kind == "char" else e[kind],
                "start": round(in_clip(e["start"], path), 3), "end": round(in_clip(e["end"], path), 3)}
               for e in hyp.timestamp[kind]]
        for kind in TIMESTAMP_KINDS}}


def assert_within_clips(records: list[dict], paths: list[str]) -> None:
    for record, path in zip(records, paths):
        duration = soundfile.info(path).duration
        for entries in record["timestamps"].values():
            assert all(0 <= e["start"] <= e["end"] <= duration for e in entries), (path, duration, entries)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory, clips) -> list[str]:
    """Sub-second cuts of the suite's speech interleaved with the whole clips."""
    folder = tmp_path_factory.mktemp("short")
    shorts = [cut(Path(clips[n % len(clips)]), folder, 0.3, s) for n, s in enumerate(SHORT_SECONDS)]
    return [path for pair in zip_longest(shorts, clips) for path in pair if path]


@pytest.fixture(scope="module")
def tiny_oracle(nemo_model, tiny_paths) -> list[dict]:
    return [nemo_alone(nemo_model, path) for path in tiny_paths]


@pytest.fixture(scope="module")
def demo_paths(tmp_path_factory) -> list[str]:
    """Every shipped demo clip, its first words cut under a second, and shorter cuts."""
    folder = tmp_path_factory.mktemp("demo-short")
    words = [cut(REPO / "demo" / "clips" / name, folder, 0.0, seconds) for name, seconds, _ in DEMO_WORDS]
    pieces = [cut(DEMO_CLIPS[n], folder, 0.2, s) for n, s in enumerate(SHORT_SECONDS)]
    return [*words, *pieces, *map(str, DEMO_CLIPS)]


@pytest.fixture(scope="module")
def demo_oracle(demo_paths) -> list[dict]:
    from common.model.loading import import_nemo_asr

    model = import_nemo_asr(quiet=True).models.ASRModel.restore_from(str(DEMO_PATH), map_location="cpu").eval()
    return [nemo_alone(model, path) for path in demo_paths]


@pytest.mark.parametrize("engine", ["batched", "nemo"])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_short_and_whole_clips_match_nemo_on_each_file(capsys, tiny_nemo, tiny_paths, tiny_oracle, engine,
                                                       batch_size):
    records = transcribe(capsys, tiny_nemo, engine, batch_size, tiny_paths)
    assert [r["text"] for r in records] == [o["text"] for o in tiny_oracle]
    assert records == tiny_oracle
    assert_within_clips(records, tiny_paths)


@pytest.mark.parametrize("engine", ["batched", "nemo"])
def test_demo_model_alone_and_in_one_batch_match_nemo(capsys, demo_paths, demo_oracle, engine):
    """Real words: the cut first words are heard as NeMo hears the files, and no clip's
    timestamps move when the others share its batch."""
    alone = transcribe(capsys, "demo", engine, 1, demo_paths)
    together = transcribe(capsys, "demo", engine, len(demo_paths), demo_paths)
    words = [word for _, _, word in DEMO_WORDS]
    # NeMo 2.2's own transcribe() of the first cut file hears "check" (NeMo 3.0: "checked");
    # that ours equals NeMo's on every NeMo is the next assertion.
    assert [r["text"] for r in alone[:len(DEMO_WORDS)]] in (words, ["check", *words[1:]])
    assert [r["text"] for r in alone] == [o["text"] for o in demo_oracle]
    assert alone == demo_oracle
    assert together == alone
    assert_within_clips(together, demo_paths)
