"""Shared fixtures: a small FastConformer-TDT .nemo built with NeMo's own classes once per run,
and real audio (espeak-ng speech where installed, else synthesized voiced signals)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SENTENCES = [
    "well i don't wish to see it any more observed phoebe",
    "the quick brown fox jumps over the lazy dog",
    "turning away her eyes it is certainly very like the old portrait",
    "one two three four five six seven eight nine ten eleven twelve thirteen",
]
SAMPLE_RATE = 16000


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def write_speech(path: Path, text: str, seed: int) -> Path:
    """16 kHz mono WAV of `text`: espeak-ng if installed, else a synthetic voiced signal whose
    length and pitch contour depend on the text."""
    import soundfile

    if have_espeak():
        raw = path.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-s", "160", "-w", str(raw), text], check=True)
        signal, rate = soundfile.read(raw, dtype="float32")
        raw.unlink()
        import librosa

        signal = librosa.resample(signal, orig_sr=rate, target_sr=SAMPLE_RATE)
    else:
        rng = np.random.default_rng(seed)
        seconds = 0.35 + 0.07 * len(text)
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        signal = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
        signal = (0.2 * signal + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    soundfile.write(path, signal, SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def tiny_nemo(tmp_path_factory) -> Path:
    """A 2-layer FastConformer-TDT with a SentencePiece tokenizer trained here, saved as .nemo."""
    from common.model.random_models import save_random_model

    return save_random_model("tiny", tmp_path_factory.mktemp("model") / "tiny-tdt.nemo", seed=0)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    for number, text in enumerate(SENTENCES):
        write_speech(folder / f"clip{number}.wav", text, seed=number)
    return folder


@pytest.fixture(scope="session")
def clips(speech_dir) -> list[str]:
    return [str(speech_dir / f"clip{n}.wav") for n in range(len(SENTENCES))]


@pytest.fixture(scope="session")
def nemo_model(tiny_nemo):
    """NeMo's own view of the test model: the oracle the toolkit is checked against."""
    from common.model.loading import import_nemo_asr

    nemo_asr = import_nemo_asr(quiet=True)
    return nemo_asr.models.ASRModel.restore_from(str(tiny_nemo), map_location="cpu").eval()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Everything the toolkit caches (random:<size> models, extracted .nemo files, ONNX and int8
    encoders) goes to this test run's folder, never to the user's cache. Session-scoped, so that it
    is in place before any module-scoped fixture runs a script."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARAKEET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model-cache"))
        yield


@pytest.fixture(scope="session")
def torch_npu_env(tmp_path_factory) -> Path:
    """A venv that sees this environment's packages (torch, NeMo) plus the real torch-npu wheel
    for this torch, with no CANN on the machine: exactly a user who forgot set_env.sh."""
    import sysconfig

    import torch

    from common.device import stacks

    release = torch.__version__.split("+")[0]
    # the first build for this torch in Ascend's table (the oldest CANN it runs on), else the plain release
    wheel = next((v for v, _ in stacks.TORCH_NPU_CANN if stacks.release(v) == release), release)
    root = tmp_path_factory.mktemp("torch-npu-env")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "parakeet_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", f"torch-npu=={wheel}"],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.skip(f"torch-npu=={wheel} could not be installed: {install.stderr.strip()[-300:]}")
    if Path("/usr/local/Ascend").exists():
        pytest.skip("CANN is installed on this machine: the no-CANN diagnosis cannot be shown here")
    return python
