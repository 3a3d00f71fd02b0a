"""The fast loader gives the same model as NeMo's restore_from(), and its cache is safe."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from common.inputs.audio import load_audio
from common.model import fast_load
from common.model.loading import import_nemo_asr, load_model


@pytest.fixture()
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "extracted"


def test_same_parameters_and_outputs_as_restore_from(tiny_nemo, clips, cache_root):
    reference = import_nemo_asr().models.ASRModel.restore_from(str(tiny_nemo), map_location="cpu").eval()
    model, reused = fast_load.fast_restore(tiny_nemo)
    assert not reused and type(model) is type(reference)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    signals = [load_audio(c) for c in clips]
    expected = reference.transcribe(signals, batch_size=2, verbose=False)
    got = model.transcribe(signals, batch_size=2, verbose=False)
    assert [h.text for h in got] == [h.text for h in expected]


def test_initialisation_is_really_skipped_and_restored_afterwards():
    with fast_load.skip_parameter_init():
        layer = torch.nn.Linear(4, 4)
        filled = torch.nn.init.normal_(torch.zeros(3))
    assert torch.equal(filled, torch.zeros(3))
    fresh = torch.nn.init.normal_(torch.zeros(1000))
    assert fresh.std() > 0.5 and layer.weight.shape == (4, 4)


def test_second_load_reuses_the_cache(tiny_nemo, cache_root):
    first, first_reused = fast_load.extracted_folder(tiny_nemo)
    marker = first / "marker"
    marker.write_text("x")
    second, second_reused = fast_load.extracted_folder(tiny_nemo)
    assert (first_reused, second_reused) == (False, True)
    assert second == first and marker.exists()
    loaded = load_model(str(tiny_nemo), "cpu")
    assert loaded.info["loader"] == "fast (extraction cache reused)"


def test_a_changed_nemo_invalidates_the_cache(tiny_nemo, tmp_path, cache_root):
    copy = tmp_path / "model.nemo"
    shutil.copy(tiny_nemo, copy)
    old, _ = fast_load.extracted_folder(copy)
    os.utime(copy, ns=(0, os.stat(copy).st_mtime_ns + 10**9))  # rewritten: new mtime
    new, reused = fast_load.extracted_folder(copy)
    assert not reused and new != old
    assert not old.exists(), "the stale extraction of the same file is removed"


def test_a_half_written_extraction_is_never_used(tiny_nemo, cache_root):
    prefix, key = fast_load._cache_key(tiny_nemo)
    cache_root.mkdir(parents=True)
    crashed = cache_root / f".{key}.partial-abc123"  # what a killed extraction leaves behind
    crashed.mkdir()
    (crashed / "model_config.yaml").write_text("truncated: [")
    empty_final = cache_root / key  # a final folder without its config is not a finished one
    empty_final.mkdir()
    folder, reused = fast_load.extracted_folder(tiny_nemo)
    assert not reused and folder == empty_final and (folder / "model_weights.ckpt").is_file()
    model = fast_load.load_extracted(folder)
    assert model.cfg.decoding.model_type == "tdt"


def test_a_failing_fast_loader_falls_back_to_restore_from(tiny_nemo, cache_root, monkeypatch):
    def broken(folder):
        raise AttributeError("internals of another NeMo version")

    monkeypatch.setattr(fast_load, "load_extracted", broken)
    loaded = load_model(str(tiny_nemo), "cpu")
    assert loaded.info["loader"].startswith("nemo restore_from (fast loader failed: AttributeError")
    assert loaded.model.cfg.decoding.model_type == "tdt"
