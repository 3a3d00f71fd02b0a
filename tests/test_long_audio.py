"""The long-audio rule, the same in every script and engine: an input longer than
--long-audio-seconds runs alone (its own batch, so short inputs are not padded to its length)
with local attention, and its record says so."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import soundfile

import accuracy_run
import accuracy_run_perf
import check_accuracy_run_perf
import inference
from common.engine import transcriber
from common.engine.transcriber import plan_batches
from common.inputs.audio import load_audio

THRESHOLD = 8.0  # seconds: above the test clips, below their concatenation
LOCAL = "rel_pos_local_attn [128, 128]"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, clips) -> list[str]:
    """Short, long (the clips twice over, ~20 s), short, short."""
    long = tmp_path_factory.mktemp("long") / "long.wav"
    soundfile.write(long, np.concatenate([load_audio(c) for c in clips] * 2), 16000)
    paths = [clips[0], str(long), clips[1], clips[2]]
    seconds = [soundfile.info(p).duration for p in paths]
    assert max(seconds[:1] + seconds[2:]) < THRESHOLD < seconds[1]
    return paths


@pytest.fixture
def model_calls(monkeypatch) -> list[dict]:
    """Every batch the model is run on: its size, its longest input and the encoder's attention."""
    calls: list[dict] = []
    real = transcriber._run_engine

    def spy(loaded, signals, *args):
        calls.append({"files": len(signals), "longest": max(len(s) for s in signals) / 16000,
                      "attention": loaded.model.encoder.self_attention_model})
        return real(loaded, signals, *args)

    monkeypatch.setattr(transcriber, "_run_engine", spy)
    return calls


def assert_long_runs_alone(calls: list[dict]) -> None:
    long_calls = [c for c in calls if c["longest"] > THRESHOLD]
    assert long_calls, "the long input was never run"
    assert all(c["files"] == 1 and c["attention"] == "rel_pos_local_attn" for c in long_calls)
    assert all(c["attention"] == "rel_pos" for c in calls if c["longest"] <= THRESHOLD)


def test_long_inputs_are_planned_alone_with_or_without_a_budget():
    durations = [3.0, 50.0, 2.0, 4.0, 40.0, 1.0]
    assert plan_batches(durations, 4, None, alone_above=30) == [[0], [1], [2, 3], [4], [5]]
    assert plan_batches(durations, 4, float("inf"), alone_above=30) == [[1], [4], [3, 0, 2, 5]]
    assert plan_batches(durations, 4, None) == [[0, 1, 2, 3], [4, 5]]


def test_a_mixed_batch_given_directly_still_runs_the_long_signal_alone(tiny_nemo, inputs, model_calls):
    from common.model.loading import load_model

    loaded = load_model(str(tiny_nemo), "cpu")
    options = transcriber.TranscribeOptions(engine="nemo", long_audio_seconds=THRESHOLD)
    transcripts = transcriber.transcribe_signals(loaded, [load_audio(p) for p in inputs], options)
    assert [t.attention for t in transcripts] == [None, LOCAL, None, None]
    assert_long_runs_alone(model_calls)


@pytest.mark.parametrize("engine", ["nemo", "batched"])
def test_inference_runs_the_long_file_alone_with_local_attention(capsys, tiny_nemo, inputs, model_calls, engine):
    code = inference.main(["--model", str(tiny_nemo), "--engine", engine, "--batch-size", "4",
                           "--long-audio-seconds", str(THRESHOLD), "--json", *inputs])
    results = json.loads(capsys.readouterr().out)["results"]
    assert code == 0
    assert [r.get("attention") for r in results] == [None, LOCAL, None, None]
    assert_long_runs_alone(model_calls)


def test_accuracy_run_uses_local_attention_on_both_sides(capsys, tiny_nemo, inputs, model_calls):
    code = accuracy_run.main(["--model", str(tiny_nemo), "--device", "cpu", "--long-audio-seconds", str(THRESHOLD),
                              "--json", *inputs])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["long_audio_seconds"] == THRESHOLD
    for entry, attention in zip(doc["accuracy"]["files"], [None, LOCAL, None, None]):
        assert entry["device"].get("attention") == entry["reference"].get("attention") == attention
    assert_long_runs_alone(model_calls)


def test_perf_runs_the_long_file_alone_in_every_configuration(capsys, tiny_nemo, inputs, model_calls):
    code = accuracy_run_perf.main(["--model", str(tiny_nemo), "--device", "cpu", "--batch-sizes", "4",
                                   "--engine", "nemo,batched", "--warmup", "0", "--runs", "1",
                                   "--long-audio-seconds", str(THRESHOLD), "--json", *inputs])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["options"]["long_audio_seconds"] == THRESHOLD
    for result in doc["results"]:
        assert [[e.get("attention") for e in b] for b in result["batches"]] == [[LOCAL], [None, None, None]]
        assert result["batches"][0][0]["index"] == 1
    assert_long_runs_alone(model_calls)


def test_the_smoke_chain_applies_the_rule_in_every_stage(capsys, tiny_nemo, inputs, model_calls, tmp_path):
    code = check_accuracy_run_perf.main(["--model", str(tiny_nemo), "--device", "cpu", "--warmup", "0", "--runs",
                                         "1", "--long-audio-seconds", str(THRESHOLD), "--report-dir",
                                         str(tmp_path), "--json", *inputs[:2]])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [f["device"].get("attention") for f in doc["accuracy"]["accuracy"]["files"]] == [None, LOCAL]
    assert [[e.get("attention") for e in b] for b in doc["perf"]["results"][0]["batches"]] == [[LOCAL], [None]]
    assert_long_runs_alone(model_calls)



@pytest.fixture
def first_conv_widths(monkeypatch) -> list[int]:
    """The time width of every output of the encoder's first subsampling convolution, the
    largest activation of a long file (256 channels x half its frames x 64 bins in parakeet)."""
    widths: list[int] = []
    real = transcriber._run_engine

    def watch(loaded, *args):
        conv = loaded.model.encoder.pre_encode.conv[0]
        with conv.register_forward_hook(lambda _module, _inputs, out: widths.append(out.shape[2])):
            return real(loaded, *args)

    monkeypatch.setattr(transcriber, "_run_engine", watch)
    return widths


@pytest.fixture
def stft_widths(monkeypatch) -> list[int]:
    """The number of samples of every STFT the featurizer takes (20 M for 21 minutes of audio,
    whose STFT and its copies hold about 0.9 GB)."""
    widths: list[int] = []
    real = transcriber._run_engine

    def watch(loaded, *args):
        featurizer = loaded.model.preprocessor.featurizer
        stft = featurizer.stft
        featurizer.stft = lambda x: (widths.append(x.shape[1]), stft(x))[1]
        try:
            return real(loaded, *args)
        finally:
            del featurizer.stft

    monkeypatch.setattr(transcriber, "_run_engine", watch)
    return widths


@pytest.mark.parametrize("engine", ["nemo", "batched"])
def test_a_long_file_never_reaches_the_subsampling_whole(capsys, tmp_path, tiny_nemo, clips, first_conv_widths,
                                                         stft_widths, engine):
    from common.engine.long_audio import CONTEXT_FRAMES, PIECE_FRAMES

    long = tmp_path / "minute.wav"
    soundfile.write(long, np.concatenate([load_audio(c) for c in clips] * 6), 16000)
    frames = soundfile.info(long).frames // 160
    code = inference.main(["--model", str(tiny_nemo), "--engine", engine, "--long-audio-seconds", str(THRESHOLD),
                           "--json", str(long), clips[0]])
    results = json.loads(capsys.readouterr().out)["results"]
    assert code == 0 and [r.get("attention") for r in results] == [LOCAL, None]
    assert frames > PIECE_FRAMES + 2 * CONTEXT_FRAMES
    assert max(first_conv_widths) <= (PIECE_FRAMES + 2 * CONTEXT_FRAMES) // 2 + 1
    assert max(stft_widths) <= (PIECE_FRAMES + 2 * CONTEXT_FRAMES) * 160 < frames * 160


def test_pieces_give_the_subsampled_features_of_the_whole_file(tiny_nemo, inputs):
    """Equal lengths, and values within float rounding (the convolution kernels block a narrower
    input differently), the frames past the valid length masked as in one pass."""
    import torch

    from common.engine.long_audio import long_audio_encoder, subsampling_in_pieces
    from common.model.loading import load_model

    model = load_model(str(tiny_nemo), "cpu").model
    signal = torch.from_numpy(load_audio(inputs[1]))[None]
    with torch.inference_mode(), long_audio_encoder(model):
        features, lengths = model.preprocessor(input_signal=signal, length=torch.tensor([signal.shape[1]]))
        whole = model.encoder.pre_encode.__class__.forward(model.encoder.pre_encode, features.transpose(1, 2), lengths)
        with subsampling_in_pieces(model.encoder.pre_encode, piece_frames=256, context_frames=64):
            pieced = model.encoder.pre_encode(x=features.transpose(1, 2), lengths=lengths)
    assert features.shape[2] > 4 * 256
    assert torch.equal(whole[1], pieced[1])
    torch.testing.assert_close(pieced[0], whole[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("cut", [0, 1, 80, 159])
def test_features_in_pieces_are_the_features_of_the_whole_file(tiny_nemo, inputs, cut):
    """Bit for bit: every log-mel frame is computed from the same samples; normalization, masking
    and padding run once over the whole, as in NeMo's forward. `cut` samples off the end leave a
    last frame at every offset within a hop."""
    import torch

    from common.engine.long_audio import features_in_pieces
    from common.model.loading import load_model

    model = load_model(str(tiny_nemo), "cpu").model
    signal = torch.from_numpy(load_audio(inputs[1]))[None]
    signal = signal[:, :signal.shape[1] - cut]
    length = torch.tensor([signal.shape[1]])
    with torch.inference_mode():
        whole, whole_lengths = model.preprocessor(input_signal=signal, length=length)
        with features_in_pieces(model.preprocessor.featurizer, piece_frames=300, context_frames=8):
            pieced, pieced_lengths = model.preprocessor(input_signal=signal, length=length)
    assert whole.shape[2] > 4 * 300
    assert torch.equal(whole_lengths, pieced_lengths)
    assert torch.equal(whole, pieced)


def test_local_attention_never_sees_a_long_file_whole(monkeypatch, capsys, tmp_path, tiny_nemo, clips):
    from nemo.collections.asr.parts.submodules.multi_head_attention import RelPositionMultiHeadAttentionLongformer

    from common.engine import long_audio
    from common.model.loading import load_model

    widths: list[int] = []
    real = RelPositionMultiHeadAttentionLongformer.forward

    def spy(self, query, *args, **kwargs):
        widths.append(query.shape[1])
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(RelPositionMultiHeadAttentionLongformer, "forward", spy)
    monkeypatch.setattr(long_audio, "ATTENTION_PIECE_FRAMES", 200)
    long = tmp_path / "minute.wav"
    soundfile.write(long, np.concatenate([load_audio(c) for c in clips] * 6), 16000)
    code = inference.main(["--model", str(tiny_nemo), "--long-audio-seconds", str(THRESHOLD), "--json", str(long)])
    result = json.loads(capsys.readouterr().out)["results"][0]
    frames = soundfile.info(long).frames / 16000 / 0.08
    assert code == 0 and result["attention"] == LOCAL
    context = long_audio.layer_reach(load_model(str(tiny_nemo), "cpu").model.encoder.layers[0]) + long_audio.LAYER_CONTEXT_MARGIN
    assert widths and max(widths) <= 200 + 2 * context < frames


def test_conformer_layers_in_pieces_give_the_encoding_of_the_whole_file(tiny_nemo, inputs):
    """Each query sees the same keys either way; the weights are shared with the model's own
    attention modules, and after the block those modules are back."""
    import torch

    from common.engine import long_audio
    from common.engine.long_audio import layer_in_pieces, local_attention
    from common.model.loading import load_model

    model = load_model(str(tiny_nemo), "cpu").model
    before = [layer.self_attn for layer in model.encoder.layers]
    signal = torch.from_numpy(load_audio(inputs[1]))[None]
    with torch.inference_mode():
        features, lengths = model.preprocessor(input_signal=signal, length=torch.tensor([signal.shape[1]]))
        with local_attention(model.encoder):
            for layer, original in zip(model.encoder.layers, before):
                assert layer.self_attn.linear_q.weight is original.linear_q.weight  # shared, not copied
            whole, whole_lengths = model.encoder(audio_signal=features, length=lengths)
            with contextlib.ExitStack() as stack:
                for layer in model.encoder.layers:
                    stack.enter_context(layer_in_pieces(layer, long_audio.layer_reach(layer), piece_frames=64))
                pieced, pieced_lengths = model.encoder(audio_signal=features, length=lengths)
    assert 64 + 2 * long_audio.layer_reach(model.encoder.layers[0]) < whole.shape[2] < long_audio.ATTENTION_PIECE_FRAMES  # one pass by default, pieces of 64
    assert torch.equal(whole_lengths, pieced_lengths)
    torch.testing.assert_close(pieced, whole, rtol=0, atol=1e-5)
    assert [layer.self_attn for layer in model.encoder.layers] == before
