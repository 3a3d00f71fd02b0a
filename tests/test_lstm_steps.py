"""The prediction network's LSTM steps on the CPU (common/engine/lstm.py): one-step calls run as
fused matmuls with torch's LSTM results, the decoding really takes that path, and transcripts and
timestamps stay NeMo's."""

from __future__ import annotations

import glob

import pytest

from tests.conftest import REPO

DEMO_CLIPS = sorted(glob.glob(str(REPO / "demo" / "clips" / "*.wav")))[:8]


def _fused(lstm, dtype="fp32"):
    from common.engine.lstm import lstm_kernels

    class Holder:  # lstm_kernels walks a model's modules; the LSTM alone is one
        def modules(self):
            return [lstm]

    return lstm_kernels(Holder(), "cpu", dtype)


@pytest.mark.parametrize("layers, batch_first, with_state", [(2, False, True), (1, True, False), (2, True, True)])
def test_one_step_equals_torch_lstm(layers, batch_first, with_state):
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(24, 32, num_layers=layers, batch_first=batch_first).eval()
    step = torch.randn(3, 1, 24) if batch_first else torch.randn(1, 3, 24)
    state = (torch.randn(layers, 3, 32), torch.randn(layers, 3, 32)) if with_state else None
    with torch.inference_mode():
        expected, (expected_h, expected_c) = lstm(step, state)
        with _fused(lstm):
            got, (got_h, got_c) = lstm(step, state)
    assert "_fused_step_weights" in vars(lstm)  # the fused path ran
    for a, b in ((got, expected), (got_h, expected_h), (got_c, expected_c)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_sequences_training_and_changed_weights_keep_torch_results():
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(24, 32, num_layers=2).eval()
    sequence, step = torch.randn(5, 2, 24), torch.randn(1, 2, 24)
    with _fused(lstm):
        with torch.inference_mode():
            assert torch.equal(lstm(sequence)[0], torch.nn.LSTM.forward(lstm, sequence)[0])
            lstm(step)
        with_grad = lstm(step)[0]  # gradients wanted: torch's own kernel, differentiable
        assert with_grad.grad_fn is not None
        with torch.no_grad():
            lstm.weight_ih_l1.mul_(0.5)  # fused weights are rebuilt, not reused stale
        with torch.inference_mode():
            assert torch.allclose(lstm(step)[0], torch.nn.LSTM.forward(lstm, step)[0], atol=1e-6)


def test_bf16_steps_compute_in_bf16():
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(24, 32, num_layers=2).eval()
    step = torch.randn(1, 2, 24)
    with torch.inference_mode():
        expected = lstm(step)[0]
        with _fused(lstm, "bf16"), torch.autocast("cpu", dtype=torch.bfloat16):
            got, (hidden, cell) = lstm(step)
    assert got.dtype == hidden.dtype == cell.dtype == torch.bfloat16
    assert vars(lstm)["_fused_step_weights"][1][0][0].dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=3e-2)


def _lstm_kernel_calls(work) -> int:
    """How many times torch's LSTM kernel (aten::lstm) ran inside `work()`, by torch's profiler."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        work()
    return sum(event.count for event in profiler.key_averages() if event.key == "aten::lstm")


def test_decoding_runs_fused_steps_with_nemo_transcripts_and_timestamps():
    """The demo model at batch 1 and at batch 4: NeMo's transcribe() runs torch's LSTM kernel once
    per decoding step, the toolkit at batch 1 never (every step fused), and both give the same
    texts and word timestamps."""
    from common import load_model
    from common.engine.transcriber import seconds_per_encoder_frame, timestamps_in_seconds
    from common.inputs.audio import duration_seconds, load_audio

    ours, reference = load_model("demo", device="cpu"), load_model("demo", device="cpu")
    model = reference.loaded.model
    signals = [load_audio(path) for path in DEMO_CLIPS]
    output = []
    nemo_calls = _lstm_kernel_calls(lambda: output.append(
        model.transcribe(signals, batch_size=1, return_hypotheses=True, timestamps=True, verbose=False)))
    model.eval()
    hypotheses = output[0][0] if isinstance(output[0], tuple) else output[0]  # NeMo 2.x: (best, all)
    frame_seconds = seconds_per_encoder_frame(model)
    expected = [(h.text, timestamps_in_seconds(h, ("word",), frame_seconds, duration_seconds(s))["word"])
                for h, s in zip(hypotheses, signals)]
    alone = []
    our_calls = _lstm_kernel_calls(lambda: alone.extend(
        ours.transcribe(path, timestamps="word") for path in DEMO_CLIPS))
    batched = ours.transcribe(DEMO_CLIPS, timestamps="word", batch_size=4)
    assert nemo_calls >= len(DEMO_CLIPS) and our_calls == 0, (nemo_calls, our_calls)
    assert [(r.text, r.timestamps["word"]) for r in alone] == expected
    assert [(r.text, r.timestamps["word"]) for r in batched] == expected
    assert all(text for text, _ in expected)
