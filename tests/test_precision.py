"""Precision paths: bf16 weights cast once run as close to fp32 as autocast, int8 really runs a
quantized encoder, the copies are built once and the model's own encoder comes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common.errors import SetupError
from common.inputs.audio import load_audio
from tests.conftest import REPO


@pytest.fixture(scope="module")
def perturbed(tiny_nemo):
    """The tiny model with every parameter moved off its initial value: norms are initialised to
    1 and 0, which bf16 holds exactly, so casting them would otherwise go unnoticed."""
    import torch

    from common.model.loading import load_model

    loaded = load_model(str(tiny_nemo), "cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return loaded


def _relative_distance(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_bf16_copy_runs_bf16_as_close_to_fp32_as_autocast(perturbed):
    """The bf16 copy: matmul weights cast once, norms kept fp32 as autocast keeps them, its layers
    laid out for the CPU's kernels (common/engine/layouts.py), the model's own encoder unchanged;
    its output bf16 and as far from fp32 as autocast's own, not further."""
    import torch

    from common.engine.encoders import build_encoder
    from common.engine.layouts import PointwiseLinear, pointwise

    encoder = perturbed.model.encoder
    features = torch.randn(2, encoder._feat_in, 300, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([300, 211])
    own_weights = {name: (t.dtype, t.stride()) for name, t in encoder.state_dict().items()}
    cast = build_encoder(encoder, "bf16")
    assert cast.layers[0].feed_forward1.linear1.weight.dtype == torch.bfloat16
    assert cast.layers[0].norm_feed_forward1.weight.dtype == torch.float32  # autocast keeps norms fp32
    convolutions = sum(pointwise(m) for m in encoder.modules())
    assert convolutions and not any(pointwise(m) for m in cast.modules())
    assert sum(type(m) is PointwiseLinear for m in cast.modules()) == convolutions
    subsampling = [m.weight for m in cast.pre_encode.modules() if type(m) is torch.nn.Conv2d]
    assert subsampling and all(w.is_contiguous(memory_format=torch.channels_last) and w.dtype == torch.bfloat16
                               for w in subsampling if w.shape[1] > 1)
    assert {name: (t.dtype, t.stride()) for name, t in encoder.state_dict().items()} == own_weights
    assert "forward" not in vars(encoder.pos_enc)
    with torch.inference_mode():
        fp32, fp32_lengths = encoder(audio_signal=features, length=lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast, _ = encoder(audio_signal=features, length=lengths)
            output, output_lengths = cast(audio_signal=features, length=lengths)
    assert output.dtype == torch.bfloat16 and torch.equal(output_lengths, fp32_lengths)
    autocast_error = _relative_distance(autocast, fp32)
    assert 1e-4 < autocast_error < 0.05
    assert _relative_distance(output, fp32) < 1.5 * autocast_error, (_relative_distance(output, fp32), autocast_error)


_BF16_WITHOUT_ONEDNN_LSTM = """
import json, sys
import torch
from common.engine.lstm import onednn_runs_bf16_lstm
from common.engine.transcriber import TranscribeOptions, transcribe_signals
from common.inputs.audio import load_audio
from common.model.loading import load_model

loaded = load_model(sys.argv[1], "cpu")
seen = set()
loaded.model.decoder.prediction["dec_rnn"].lstm.register_forward_hook(
    lambda module, args, output: seen.add(str(output[0].dtype)))
texts = {engine: [t.text for t in transcribe_signals(loaded, [load_audio(sys.argv[2])],
                                                     TranscribeOptions(dtype="bf16", engine=engine))]
         for engine in ("batched", "nemo")}
print(json.dumps({"onednn": onednn_runs_bf16_lstm(), "lstm": sorted(seen), "texts": texts,
                  "mkldnn_after": torch.backends.mkldnn.enabled}))
"""


def test_bf16_runs_where_onednn_has_no_bf16_lstm(tiny_nemo, clips):
    """On a CPU where oneDNN cannot build a bf16 LSTM (CI's; here oneDNN capped at AVX2 stands in
    for it) bf16 still transcribes with both engines, the prediction LSTM still computing in bf16
    on PyTorch's own kernels, and oneDNN is on again afterwards."""
    proc = subprocess.run([sys.executable, "-c", _BF16_WITHOUT_ONEDNN_LSTM, str(tiny_nemo), clips[0]],
                          env=dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2"), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    if seen["onednn"]:
        pytest.skip("oneDNN capped at AVX2 still builds a bf16 LSTM here: the fallback cannot be exercised")
    assert seen["lstm"] == ["torch.bfloat16"] and seen["mkldnn_after"] is True, seen
    assert all(len(texts) == 1 for texts in seen["texts"].values()), seen


def test_copies_are_built_once_and_the_model_keeps_its_encoder(perturbed, clips):
    from common.engine.transcriber import TranscribeOptions, transcribe_signals

    own = perturbed.model.encoder
    signals = [load_audio(clips[0])]
    transcribe_signals(perturbed, signals, TranscribeOptions(dtype="bf16", engine="batched"))
    copy = perturbed.encoders["bf16"][1]
    transcribe_signals(perturbed, signals, TranscribeOptions(dtype="bf16", engine="nemo"))
    assert perturbed.encoders["bf16"][1] is copy and copy is not own
    assert perturbed.model.encoder is own


@pytest.mark.parametrize("engine", ["batched", "nemo"])
def test_int8_runs_int8_matmuls(tiny_nemo, clips, engine):
    """Inside the encoder the Linear layers, and the pointwise convolutions (Linear layers over
    channels), run as int8 x int8 matmuls (observed: torch._int_mm's operands); at fp32 the
    encoder runs none, its layers the model's own float layers."""
    import torch
    from torch.overrides import TorchFunctionMode

    from common.engine.int8 import Int8Linear
    from common.engine.layouts import pointwise
    from common.engine.transcriber import TranscribeOptions, transcribe_signals
    from common.model.loading import load_model

    class IntMatmuls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.operands = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch._int_mm:
                self.operands.append((args[0].dtype, args[1].dtype))
            return func(*args, **(kwargs or {}))

    loaded = load_model(str(tiny_nemo), "cpu")
    signals = [load_audio(clip) for clip in clips[:2]]
    with IntMatmuls() as fp32_run:
        transcribe_signals(loaded, signals, TranscribeOptions(dtype="fp32", engine=engine, batch_size=2))
    assert fp32_run.operands == []
    with IntMatmuls() as int8_run:
        texts = transcribe_signals(loaded, signals, TranscribeOptions(dtype="int8", engine=engine, batch_size=2))
    assert all(t.text for t in texts)
    fp32_layers, int8_copy = list(loaded.model.encoder.modules()), loaded.encoders["int8"][1]
    convolutions = sum(pointwise(m) for m in fp32_layers)
    layers = sum(type(m) is torch.nn.Linear for m in fp32_layers) + convolutions
    assert convolutions and not any(pointwise(m) or type(m) is torch.nn.Linear for m in int8_copy.modules())
    assert sum(type(m) is Int8Linear for m in int8_copy.modules()) == layers
    assert set(int8_run.operands) == {(torch.int8, torch.int8)} and len(int8_run.operands) >= layers


def test_int8_is_refused_off_the_cpu():
    from common.engine.precision import check_dtype_for_device

    check_dtype_for_device("int8", "cpu")
    for device in ("npu:0", "cuda"):
        with pytest.raises(SetupError, match="int8: CPU only"):
            check_dtype_for_device("int8", device)


def test_slow_cpu_precisions_are_named(monkeypatch):
    from common.engine import precision

    # the CPU flags' warnings alone (a wrong int8 kernel is named first: its own test above)
    monkeypatch.setattr(precision, "int8_matmul_problem", lambda: None)
    monkeypatch.setattr(precision.accelerators, "cpu_flags", lambda: {"avx512f", "avx512_vnni"})
    assert "no native bf16" in precision.cpu_precision_warning("bf16")
    assert precision.cpu_precision_warning("int8") is None
    monkeypatch.setattr(precision.accelerators, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "avx2"})
    assert precision.cpu_precision_warning("bf16") is None
    assert "no VNNI" in precision.cpu_precision_warning("int8")
    assert precision.cpu_precision_warning("fp32") is None


def test_int8_long_audio_builds_its_own_copy(tiny_nemo, clips):
    """A long file runs its int8 copy with local attention; the next short file gets a copy with
    the model's own attention again."""
    from common.engine.transcriber import TranscribeOptions, transcribe_signals
    from common.model.loading import load_model

    loaded = load_model(str(tiny_nemo), "cpu")
    long = np.concatenate([load_audio(c) for c in clips])
    options = TranscribeOptions(dtype="int8", engine="batched", long_audio_seconds=len(long) / 16000 - 1)
    long_result, short_result = transcribe_signals(loaded, [long, load_audio(clips[0])], options)
    assert long_result.attention and not short_result.attention
    attention_names = {type(m).__name__ for m in loaded.encoders["int8"][1].modules()}
    assert "RelPositionMultiHeadAttentionLongformer" not in attention_names
    assert "RelPositionMultiHeadAttention" in attention_names


def test_int8_linear_is_the_product_of_its_quantized_operands():
    """Int8Linear computes, in int32, the product of the weight quantized per output channel and
    the input quantized per row (checked against the same arithmetic in float64); each row's
    result does not depend on the other rows of the batch; and it stays close to the float layer."""
    import torch

    from common.engine.int8 import Int8Linear, quantize_weight
    from common.engine.precision import int8_matmul_problem

    if int8_matmul_problem():  # the next test checks that the toolkit says so
        pytest.skip(int8_matmul_problem())
    generator = torch.Generator().manual_seed(0)
    for bias in (True, False):
        linear = torch.nn.Linear(96, 160, bias=bias)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(160, 96, generator=generator))
        weight, scale = quantize_weight(linear.weight)
        assert weight.dtype == torch.int8 and weight.abs().amax(1).eq(127).all()
        layer = Int8Linear(weight, scale, None if linear.bias is None else linear.bias.detach())
        inputs = torch.randn(2, 5, 96, generator=generator) * torch.linspace(0.1, 10, 5)[:, None]
        rows = inputs.reshape(-1, 96).double()
        row_scale = rows.abs().amax(1, keepdim=True) / 127
        expected = (torch.round(rows / row_scale) @ weight.double().T) * row_scale * scale.double()
        if bias:
            expected += linear.bias.detach().double()
        with torch.no_grad():
            output = layer(inputs)
            alone = layer(inputs[1, 3:4])
            reference = linear(inputs)
        assert output.shape == (2, 5, 160) and output.dtype == torch.float32
        torch.testing.assert_close(output.reshape(-1, 160).double(), expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(alone[0], output[1, 3])
        assert _relative_distance(output, reference) < 0.02



def test_an_int8_matmul_that_gives_wrong_sums_is_named_before_it_is_used():
    """The probe's verdict agrees with the kernel on products of the encoder's sizes (exact int32
    sums or not), and where the kernel is wrong, --dtype int8 is warned about in one line."""
    import torch

    from common.engine.precision import cpu_precision_warning, int8_matmul_problem

    generator = torch.Generator().manual_seed(1)
    left = torch.randint(-127, 128, (64, 1024), dtype=torch.int8, generator=generator)
    right = torch.randint(-127, 128, (1024, 256), dtype=torch.int8, generator=generator)
    exact = torch.equal(torch._int_mm(left, right).long(), left.long() @ right.long())
    assert (int8_matmul_problem() is None) == exact, int8_matmul_problem()
    if not exact:
        warning = cpu_precision_warning("int8")
        assert warning.startswith("--dtype int8: torch ") and "wrong sums" in warning and "\n" not in warning

def test_int8_weights_are_quantized_once_per_model_file(tiny_nemo, clips, tmp_path, monkeypatch):
    """The first int8 run saves the encoder's int8 weights in the cache (published whole, by a
    rename); a later load of the same file reads them instead of quantizing, with the same
    transcript; another version of the file is quantized again."""
    import shutil

    from common.engine import int8
    from common.engine.transcriber import TranscribeOptions, transcribe_signals
    from common.model.loading import load_model

    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(tmp_path / "cache"))
    model_file = tmp_path / "model.nemo"
    shutil.copy(tiny_nemo, model_file)
    signals = [load_audio(clips[0])]
    options = TranscribeOptions(dtype="int8", engine="batched")
    first = transcribe_signals(load_model(str(model_file), "cpu"), signals, options)[0].text
    saved = sorted(p.name for p in (tmp_path / "cache" / "int8-encoders").iterdir())
    assert len(saved) == 2 and saved[1].endswith(".pt") and saved[0] == f".{saved[1]}.lock", saved

    quantized = []
    real_quantize = int8.quantize_weight
    monkeypatch.setattr(int8, "quantize_weight", lambda weight: quantized.append(1) or real_quantize(weight))
    again = transcribe_signals(load_model(str(model_file), "cpu"), signals, options)[0].text
    assert again == first and first and quantized == []
    os.utime(model_file, ns=(1, 1))  # another version of the file
    transcribe_signals(load_model(str(model_file), "cpu"), signals, options)
    assert quantized and len(list((tmp_path / "cache" / "int8-encoders").glob("*.pt"))) == 2
