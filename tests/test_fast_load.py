"""The fast loader gives the same model as NeMo's restore_from(), and its cache is safe."""

from __future__ import annotations

import os
import shutil
import threading

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


def init_surface() -> dict:
    """Every object a process-wide patch of parameter initialisation would replace: the
    torch.nn.init functions, every Module class's own reset_parameters, Tensor's samplers."""
    surface = {f"init.{name}": getattr(torch.nn.init, name) for name in dir(torch.nn.init)
               if name.endswith("_") and not name.startswith("_")}
    surface.update({f"Tensor.{name}": getattr(torch.Tensor, name) for name in ("uniform_", "normal_")})
    seen, stack = set(), [torch.nn.Module]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    surface.update({f"{cls.__module__}.{cls.__qualname__}": vars(cls)["reset_parameters"] for cls in seen
                    if "reset_parameters" in vars(cls)})
    return surface


def assert_same_objects(before: dict, after: dict) -> None:
    changed = [name for name in before if after.get(name) is not before[name]]
    assert not changed, f"patched: {changed[:5]}"


def initialisation_is_random() -> bool:
    layer = torch.nn.Linear(64, 64)
    return bool(layer.weight.std() > 0.01 and torch.nn.init.normal_(torch.zeros(1000)).std() > 0.5)


def test_initialisation_is_really_skipped_inside_and_random_afterwards():
    with fast_load.skip_parameter_init():
        weight = torch.nn.Parameter(torch.zeros(64, 64))
        for initialise in (torch.nn.init.kaiming_uniform_, torch.nn.init.xavier_normal_,
                           torch.nn.init.trunc_normal_, torch.nn.init.sparse_):
            initialise(weight, *([0.5] if initialise is torch.nn.init.sparse_ else []))
            assert torch.equal(weight, torch.zeros(64, 64)), initialise.__name__
        torch.nn.init.orthogonal_(weight)  # its QR is skipped: the result is not orthogonal
        assert not torch.allclose(weight @ weight.T, torch.eye(64), atol=1e-3)
        assert torch.equal(torch.nn.init.normal_(torch.zeros(3)), torch.zeros(3))
        assert torch.zeros(1000).normal_().std() > 0.5, "random draws on other tensors stay real"
    assert initialisation_is_random()
    torch.nn.init.orthogonal_(weight)
    assert torch.allclose(weight @ weight.T, torch.eye(64), atol=1e-3)


def test_no_global_patch_while_another_thread_skips_initialisation():
    before = init_surface()
    inside, release, seen_inside = threading.Event(), threading.Event(), []

    def build_without_init():
        with fast_load.skip_parameter_init():
            seen_inside.append(torch.equal(torch.nn.init.normal_(torch.zeros(8)), torch.zeros(8)))
            inside.set()
            release.wait(30)

    worker = threading.Thread(target=build_without_init)
    worker.start()
    try:
        assert inside.wait(30)
        assert_same_objects(before, init_surface())
        assert initialisation_is_random(), "this thread initialises normally meanwhile"
    finally:
        release.set()
        worker.join()
    assert seen_inside == [True], "the worker's own initialisation was skipped"
    assert_same_objects(before, init_surface())


def test_a_load_in_another_thread_patches_nothing(tiny_nemo, cache_root):
    folder, _ = fast_load.extracted_folder(tiny_nemo)
    before, samples, loaded = init_surface(), [], []
    worker = threading.Thread(target=lambda: loaded.extend(fast_load.load_extracted(folder) for _ in range(3)))
    worker.start()
    while worker.is_alive():
        assert_same_objects(before, init_surface())
        samples.append(initialisation_is_random())
    worker.join()
    assert len(loaded) == 3 and all(samples) and samples
    assert_same_objects(before, init_surface())
    assert initialisation_is_random()


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


def test_an_extraction_being_read_is_not_removed_by_a_newer_version(tiny_nemo, tmp_path, cache_root):
    copy = tmp_path / "model.nemo"
    shutil.copy(tiny_nemo, copy)
    with fast_load.extraction(copy) as (old, _):  # a reader of the old version holds it
        os.utime(copy, ns=(0, os.stat(copy).st_mtime_ns + 10**9))
        new, _ = fast_load.extracted_folder(copy)
        assert new != old and (old / "model_config.yaml").is_file(), "still being read: kept"
        model = fast_load.load_extracted(old)
    assert model.cfg.decoding.model_type == "tdt"
    fast_load.extracted_folder(copy)
    assert not old.exists() and new.exists(), "removed once nobody holds it"


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


@pytest.mark.parametrize("python", ["with the data filter", "without it (before 3.11.4)"])
def test_extraction_keeps_files_inside_and_refuses_links_and_escapes(tmp_path, monkeypatch, python):
    """A .nemo extracts to the same files with tarfile's "data" filter and, on Pythons without it
    (Debian bookworm's 3.11.2), with the same refusals done by hand: a member escaping the folder
    or a link is refused, nothing else is."""
    import io
    import tarfile

    from tests.conftest import REPO

    if python.startswith("without"):
        monkeypatch.delattr(tarfile, "data_filter")
    demo = REPO / "demo" / "parakeet-tdt-demo.nemo"
    with tarfile.open(demo, "r:*") as archive:
        fast_load.extract_safely(archive, tmp_path / "demo")
        expected = {m.name.lstrip("./") for m in archive.getmembers() if m.isfile()}
    extracted = {str(p.relative_to(tmp_path / "demo")) for p in (tmp_path / "demo").rglob("*") if p.is_file()}
    assert extracted == expected and expected

    def archive_with(member: tarfile.TarInfo) -> tarfile.TarFile:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
        buffer.seek(0)
        return tarfile.open(fileobj=buffer, mode="r")

    escape = tarfile.TarInfo("../escaped.txt")
    escape.size = 1
    link = tarfile.TarInfo("model_config.yaml")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for member in (escape, link):
        with pytest.raises(tarfile.TarError):
            fast_load.extract_safely(archive_with(member), tmp_path / "bad")
    assert not (tmp_path / "escaped.txt").exists()
