"""check_accuracy_run_perf.py: the dry-run's verdicts, and the full chain in one process."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import pytest

import check_accuracy_run_perf as check
from tests.conftest import REPO


def dry_run(capsys, *argv) -> tuple[int, dict]:
    code = check.main(["--dry-run", "--json", *map(str, argv)])
    return code, json.loads(capsys.readouterr().out)


def by_name(doc: dict) -> dict:
    return {c["name"]: c for c in doc["checks"]}


def test_dry_run_on_a_good_model_and_audio(capsys, tiny_nemo, clips):
    code, doc = dry_run(capsys, "--model", tiny_nemo, "--audio", clips[0])
    assert code == 0 and doc["passed"]
    checks = by_name(doc)
    assert checks["model"]["status"] == "PASS" and "EncDecRNNTBPEModel (tdt)" in checks["model"]["value"]
    assert checks[f"audio {clips[0]}"]["status"] == "PASS" and "16000 Hz, 1 ch" in checks[f"audio {clips[0]}"]["value"]
    for name in ("python", "torch", "nemo_toolkit[asr]", "soundfile", "librosa", "jiwer", "disk space", "memory"):
        assert checks[name]["status"] == "PASS", checks[name]
    assert set(doc["counts"]) == {"PASS", "WARN", "FAIL"} and doc["counts"]["FAIL"] == 0
    assert all(set(c) == {"name", "status", "value", "fix"} for c in doc["checks"])
    assert all(c["fix"] for c in doc["checks"] if c["status"] != "PASS")


def test_dry_run_warns_about_resampling(capsys, tiny_nemo, tmp_path, clips):
    import soundfile

    signal, _ = soundfile.read(clips[0])
    stereo = tmp_path / "stereo44.wav"
    soundfile.write(stereo, [[s, s] for s in signal[:8000]], 44100)
    code, doc = dry_run(capsys, "--model", tiny_nemo, "--audio", stereo)
    row = by_name(doc)[f"audio {stereo}"]
    assert code == 0 and row["status"] == "WARN" and "44100 Hz, 2 ch" in row["value"]


@pytest.mark.parametrize("problem", ["missing_model", "corrupt_model", "missing_audio"])
def test_dry_run_failures(capsys, tiny_nemo, clips, tmp_path, problem):
    model, audio = str(tiny_nemo), clips[0]
    if problem == "missing_model":
        model = str(tmp_path / "parakeet-tdt-0.6b-v2.nemo")
    if problem == "corrupt_model":
        model = str(tmp_path / "corrupt.nemo")
        with open(tiny_nemo, "rb") as source, open(model, "wb") as target:
            target.write(source.read()[:3000])  # a tar cut off before model_config.yaml ends
    if problem == "missing_audio":
        audio = str(tmp_path / "missing.wav")
    code, doc = dry_run(capsys, "--model", model, "--audio", audio)
    assert code == 1 and not doc["passed"]
    failed = [c for c in doc["checks"] if c["status"] == "FAIL"]
    assert len(failed) == 1
    expected_name = f"audio {audio}" if problem == "missing_audio" else "model"
    assert failed[0]["name"] == expected_name and failed[0]["fix"]
    if problem == "corrupt_model":
        assert "damaged .nemo (cut short" in failed[0]["value"]


def damaged_copy(tiny_nemo, path, cut_at: float = 1.0, flip_at: float | None = None):
    """A copy of the test model cut to a fraction of its length, or with one byte inverted."""
    data = bytearray(open(tiny_nemo, "rb").read())
    if flip_at is not None:
        data[int(len(data) * flip_at)] ^= 0xFF
    path.write_bytes(bytes(data[: int(len(data) * cut_at)]))
    return path


@pytest.mark.parametrize("damage", ["cut at 60%", "byte flipped in the weights"])
def test_dry_run_reads_the_nemo_to_its_end(capsys, tiny_nemo, clips, tmp_path, damage):
    if damage == "cut at 60%":
        model = damaged_copy(tiny_nemo, tmp_path / "cut.nemo", cut_at=0.6)
        expected = "cut short"
    else:  # the weights are the last ~85% of the file
        model = damaged_copy(tiny_nemo, tmp_path / "flipped.nemo", flip_at=0.7)
        expected = "checksum mismatch"
    code, doc = dry_run(capsys, "--model", model, "--audio", clips[0])
    failed = [c for c in doc["checks"] if c["status"] == "FAIL"]
    assert code == 1 and [c["name"] for c in failed] == ["model"]
    assert expected in failed[0]["value"] and "\n" not in failed[0]["value"]
    assert failed[0]["fix"] == "re-download or re-export the .nemo"


def test_dry_run_passes_an_intact_extracted_folder_and_fails_a_corrupted_one(capsys, tiny_nemo, clips, tmp_path):
    import tarfile

    folder = tmp_path / "extracted"
    with tarfile.open(tiny_nemo) as archive:
        archive.extractall(folder, filter="data")
    code, doc = dry_run(capsys, "--model", folder, "--audio", clips[0])
    assert code == 0 and by_name(doc)["model"]["status"] == "PASS"
    damaged_copy(folder / "model_weights.ckpt", folder / "model_weights.ckpt", flip_at=0.5)
    code, doc = dry_run(capsys, "--model", folder, "--audio", clips[0])
    assert code == 1 and "checksum mismatch" in by_name(doc)["model"]["value"]


def test_loading_a_cut_nemo_is_a_one_line_setup_error(tiny_nemo, clips, tmp_path):
    model = damaged_copy(tiny_nemo, tmp_path / "cut.nemo", cut_at=0.6)
    env = {**os.environ, "PARAKEET_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(REPO / "inference.py"), "--model", str(model), "--json", clips[0]],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "damaged .nemo (cut short" in lines[0] and "re-download or re-export the .nemo" in lines[0]


def test_dry_run_table_names_fixes(capsys, tmp_path):
    code = check.main(["--dry-run", "--model", str(tmp_path / "x.nemo")])
    out = capsys.readouterr().out
    assert code == 1
    assert "model" in out and "FAIL" in out and "findings, with their fixes:" in out
    assert out.strip().splitlines()[-1].startswith("NOT READY: ") and out.strip().endswith("1 fail")


@pytest.mark.slow
def test_dry_run_with_torch_npu_but_no_cann(torch_npu_env, tiny_nemo, clips):
    """The commonest first run on an Ascend host: the wheel installed, CANN not loadable. Asking
    for the NPU fails the dry-run with the fix; on the CPU (or auto) it is only a warning."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    runs, verdicts = {}, {}
    for device in ("npu", "cpu", "auto"):
        proc = subprocess.run([torch_npu_env, str(REPO / "check_accuracy_run_perf.py"), "--dry-run", "--json",
                               "--device", device, "--model", str(tiny_nemo), "--audio", clips[0]],
                              capture_output=True, text=True, env=env, timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        doc = json.loads(proc.stdout)
        runs[device] = (proc.returncode, by_name(doc)["torch_npu"])
        verdicts[device] = doc["verdict"]
    code, row = runs["npu"]
    assert code == 1 and row["status"] == "FAIL"
    assert "CANN runtime not found (lib" in row["value"] and "set_env.sh" in row["fix"]
    for device in ("cpu", "auto"):
        code, row = runs[device]
        assert code == 0 and row["status"] == "WARN" and "CANN runtime not found (lib" in row["value"]
    assert verdicts["auto"].startswith("READY (CPU only: the NPU cannot be used: CANN runtime not found")
    assert (verdicts["cpu"], verdicts["npu"]) == ("READY", "NOT READY")


def test_full_chain_loads_each_model_once_and_writes_agreeing_reports(capsys, tiny_nemo, clips, tmp_path,
                                                                       monkeypatch):
    from common.model import fast_load

    real_load = fast_load.load_extracted
    restores = []

    def counting_load(folder):  # the real loader, counted
        restores.append(folder)
        return real_load(folder)

    monkeypatch.setattr(fast_load, "load_extracted", counting_load)
    report_dir = tmp_path / "reports"
    code = check.main(["--model", str(tiny_nemo), "--audio", *clips[:2], "--device", "cpu", "--runs", "2",
                       "--report-dir", str(report_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert len(restores) == 1, "cpu target and cpu reference share one load"
    doc = json.loads((report_dir / "report.json").read_text())
    assert doc["stages"] == {"checks": "passed", "accuracy": "passed", "perf": "passed"}
    assert doc["model_loads"] == [{"model": str(tiny_nemo), "device": "cpu"}]
    markdown = (report_dir / "report.md").read_text()
    assert markdown == out
    assert doc["accuracy"]["summary"] in markdown
    perf = doc["perf"]["results"][0]
    assert f"| cpu | {perf['stats']['median']:.4f} | {perf['stats']['p90']:.4f} | {perf['rtfx']:.2f} |" in markdown
    assert len(perf["latencies"]) == 2
    cold = doc["cold_start"]
    assert cold["device"] == "cpu" and cold["first_call_seconds"] > 0 and "before any other stage" in cold["measured"]
    assert doc["perf"]["cold_start"]["cpu"]["first_call_seconds"] == cold["first_call_seconds"]
    assert f"Cold start on cpu: import {cold['import_seconds']:.2f} s" in markdown
    for entry in doc["accuracy"]["accuracy"]["files"]:
        assert entry["device"]["text"][:50] in markdown
    # the performance stage timed what inference.py runs by default, and the report names it
    from common.choices import BATCH_SECONDS, BATCH_SIZE, DEFAULT_ENGINE

    config = perf["config"]
    assert (config["engine"], config["batch_size"], config["batch_seconds"]) == (DEFAULT_ENGINE, BATCH_SIZE,
                                                                                  BATCH_SECONDS)
    assert "decoding" in perf["stages"][0], "only the batched engine has a decoding stage of its own"
    assert f"timed runs, engine batched, batch ≤{BATCH_SIZE} files / ≤{BATCH_SECONDS:g} s)" in markdown


@pytest.fixture
def unloadable_torch_npu(tmp_path, monkeypatch):
    """A torch_npu for this torch whose import fails as the real wheel's does on a host without
    CANN (tests/conftest.py's torch_npu_env installs the real one, in the slow test above): a
    stand-in for the missing system library, on sys.path for this test only."""
    import torch

    from common.device import stacks

    release = stacks.release(torch.__version__)
    package = tmp_path / "site" / "torch_npu"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("libhccl.so: cannot open shared object file: '
                                         'No such file or directory")\n')
    metadata = tmp_path / "site" / f"torch_npu-{release}.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch_npu\nVersion: {release}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PARAKEET_ASCEND_ROOT", str(tmp_path / "no-ascend"))  # no CANN, whatever the host has
    return release


def test_dry_run_on_auto_says_the_npu_cannot_be_used_and_the_run_goes_to_the_cpu(capsys, unloadable_torch_npu,
                                                                                 tiny_nemo):
    """torch_npu installed, CANN missing, no --device: READY, but not a bare READY."""
    code = check.main(["--dry-run", "--model", str(tiny_nemo)])
    out = capsys.readouterr().out
    verdict = out.strip().splitlines()[-1]
    assert code == 0
    assert verdict.startswith("READY (CPU only: the NPU cannot be used: CANN runtime not found (libhccl.so"), verdict
    code, doc = dry_run(capsys, "--model", tiny_nemo)
    assert doc["verdict"].startswith("READY (CPU only: the NPU cannot be used:")
    findings = {f["name"]: f for f in doc["findings"]}
    assert findings["device auto"]["status"] == "WARN" and "set_env.sh" in findings["device auto"]["fix"]
    assert all(f["fix"] for f in doc["findings"]) and {f["name"] for f in doc["findings"]} == \
        {c["name"] for c in doc["checks"] if c["status"] != "PASS"}


def test_full_check_on_the_cpu_names_every_warning_with_its_fix(capsys, unloadable_torch_npu, tiny_nemo, clips,
                                                                 tmp_path):
    """--device cpu on a host whose torch_npu cannot load: the run passes, and the console, report.md,
    report.json and report.html all say that torch_npu is installed but CANN is missing, with the fix."""
    report_dir = tmp_path / "reports"
    code = check.main(["--model", str(tiny_nemo), "--device", "cpu", "--runs", "1", "--warmup", "0",
                       "--report-dir", str(report_dir), clips[0]])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads((report_dir / "report.json").read_text())
    row = {f["name"]: f for f in doc["checks"]["findings"]}["torch_npu"]
    assert row["status"] == "WARN"
    assert row["value"] == (f"{unloadable_torch_npu} is installed but cannot load: CANN runtime not found "
                            "(libhccl.so cannot be loaded)")
    assert "source " in row["fix"] and "set_env.sh" in row["fix"] and re.search(r"install (the )?CANN", row["fix"])
    markdown = (report_dir / "report.md").read_text()
    html = (report_dir / "report.html").read_text()
    for finding in doc["checks"]["findings"]:
        for text in (out, markdown):
            assert f"**{finding['status']}** {finding['name']}: {finding['value']}" in text
            assert f"Fix: {finding['fix']}" in text
        assert html_escape(finding["fix"]) in html and html_escape(finding["value"]) in html


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_full_chain_stops_after_failed_checks(capsys, tmp_path, clips):
    code = check.main(["--model", "random:tiny", "--audio", str(tmp_path / "gone.wav"), "--report-dir",
                       str(tmp_path / "r")])
    assert code == 1
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["stages"] == {"checks": "failed"} and "accuracy" not in doc
    assert "Stopped after the environment checks" in (tmp_path / "r" / "report.md").read_text()


def test_a_python_without_tarfiles_data_filter_is_named_where_nemo_needs_it(monkeypatch):
    """NeMo 3.0 unpacks a .nemo with tarfile's filter argument, which Pythons before 3.11.4 lack
    (Debian bookworm's 3.11.2): the checks say so, as a warning (the default loader works there)."""
    import tarfile

    from common.checks import environment
    from common.device.environment import package_version

    assert [c.name for c in environment.python_checks()] == ["python"]
    monkeypatch.delattr(tarfile, "data_filter")
    names = {c.name: c for c in environment.python_checks()}
    if int(package_version("nemo_toolkit").split(".")[0]) >= 3:
        assert names["python tarfile"].status == environment.WARN and "--loader nemo" in names["python tarfile"].value
    else:
        assert list(names) == ["python"]


def test_packages_of_another_torch_line_are_named_with_the_command_that_leaves_torch_alone():
    """The vendor-image route: for a torch other than this venv's line, the installed NeMo (and
    numpy, where the lines differ) conflict, and the fix installs that line's requirements-host.txt
    under its constraints; for this venv's own torch, every package of its line is there."""
    from common.checks.environment import FAIL, PASS, host_package_checks
    from common.device import stacks
    from common.device.environment import package_version

    installed_torch = package_version("torch")
    (own,) = host_package_checks(installed_torch)
    assert own.status == PASS, own
    other = next(line for line in stacks.LINES if line.nemo != stacks.release(package_version("nemo_toolkit")))
    (check,) = host_package_checks(other.torch)
    assert check.status == FAIL
    assert f"nemo_toolkit {package_version('nemo_toolkit')} (line {other.name} needs {other.nemo})" in check.value
    assert check.fix.startswith(f"pip install -r {other.host_requirements} -c {other.constraints}")
    assert (REPO / other.host_requirements).is_file()


def test_no_host_requirements_file_pins_torch_or_torch_npu():
    """requirements-host.txt must never replace the torch (and torch_npu) an image came with."""
    from common.checks.environment import pinned_requirements
    from common.device import stacks

    for line in stacks.LINES:
        text = (REPO / line.host_requirements).read_text(encoding="utf-8")
        names = set(pinned_requirements(REPO / line.host_requirements))
        assert not names & {"torch", "torch_npu", "torch-npu"} and "-r requirements.txt" not in text, line.name
        assert {"nemo_toolkit", "soundfile", "jiwer"} <= names, line.name


@pytest.mark.parametrize("problem", ["a file", "read-only"])
def test_a_bad_report_dir_is_a_setup_error_before_nemo_is_imported(tmp_path, problem):
    report_dir = tmp_path / "reports"
    if problem == "a file":
        report_dir.write_text("not a folder")
    else:
        report_dir.mkdir()
        report_dir.chmod(0o500)
        if os.access(report_dir, os.W_OK):
            pytest.skip("this user writes into read-only folders (root): the refusal cannot be seen")
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "check_accuracy_run_perf.py"), "--model",
                           "demo", "--audio", str(REPO / "examples" / "demo.wav"), "--report-dir", str(report_dir)],
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 2 and errors == [errors[0]] and f"--report-dir {report_dir}" in errors[0], errors
    assert "| nemo" not in done.stderr  # refused before NeMo's import
