"""The batched engine: identical to NeMo's transcribe() whatever the batch composition,
streamed results, long-audio local attention, decoder placement, precision."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

import inference
from common.engine.transcriber import plan_batches
from common.inputs.audio import load_audio


@pytest.fixture(scope="module")
def mixed_clips(tmp_path_factory, clips):
    """The speech clips plus a very short one (0.3 s) and a long one (~45 s) built from speech."""
    folder = tmp_path_factory.mktemp("mixed")
    short = folder / "short.wav"
    soundfile.write(short, load_audio(clips[1])[:4800], 16000)
    long = folder / "long.wav"
    soundfile.write(long, np.concatenate([load_audio(c) for c in clips] * 3), 16000)
    return [str(short), *clips, str(long)]


def ours(capsys, *argv) -> list[str]:
    code = inference.main([*map(str, argv), "--json"])
    assert code == 0
    return [r["text"] for r in json.loads(capsys.readouterr().out)["results"]]


def nemo_texts(nemo_model, paths, batch_size) -> list[str]:
    """NeMo transcribing the files itself (its loader: clips under 1 s are not padded)."""
    hyps = nemo_model.transcribe(list(paths), batch_size=batch_size, verbose=False)
    return [h.text for h in (hyps[0] if isinstance(hyps, tuple) else hyps)]


@pytest.mark.parametrize("batch_size, batch_seconds", [(1, 120), (4, 120), (16, 1000), (16, 10)])
def test_batched_engine_equals_nemo_transcribe(capsys, tiny_nemo, nemo_model, mixed_clips, batch_size, batch_seconds):
    expected = nemo_texts(nemo_model, mixed_clips, batch_size=1)
    got = ours(capsys, "--model", tiny_nemo, "--batch-size", batch_size, "--batch-seconds", batch_seconds, *mixed_clips)
    assert got == expected
    assert ours(capsys, "--model", tiny_nemo, "--engine", "nemo", "--batch-size", batch_size, *mixed_clips) == expected


def test_batch_plan_respects_the_budget_and_covers_everything():
    durations = [2.0, 20.0, 5.0, 19.0, 3.0, 2.5, 18.0]
    batches = plan_batches(durations, max_files=16, max_seconds=40.0)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for batch in batches:
        longest = max(durations[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 40.0
        assert durations[batch[0]] == longest
    assert batches[0] == [1, 3]  # 20 + 19 -> padded 40 s
    assert plan_batches(durations, max_files=2, max_seconds=None) == [[0, 1], [2, 3], [4, 5], [6]]


def test_jsonl_streams_every_file_once_with_its_index(capsys, tiny_nemo, mixed_clips):
    code = inference.main(["--model", str(tiny_nemo), "--output-format", "jsonl", "--batch-seconds", "15",
                           *mixed_clips])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    # the engine runs the longest first; stdout's JSONL still arrives in input order
    assert [r["index"] for r in lines] == list(range(len(mixed_clips)))
    for record in lines:
        assert record["path"] == mixed_clips[record["index"]] and record["text"] is not None


@pytest.mark.parametrize("engine", ["batched", "nemo"])
def test_long_audio_switches_to_local_attention_like_nemo(capsys, tiny_nemo, mixed_clips, engine):
    from common.model.loading import import_nemo_asr

    long = mixed_clips[-1]
    code = inference.main(["--model", str(tiny_nemo), "--engine", engine, "--long-audio-seconds", "30", "--json",
                           long, mixed_clips[1]])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    long_result, short_result = doc["results"]
    assert long_result["attention"] == "rel_pos_local_attn [128, 128]"
    assert "attention" not in short_result
    reference = import_nemo_asr().models.ASRModel.restore_from(str(tiny_nemo), map_location="cpu").eval()
    reference.change_attention_model("rel_pos_local_attn", [128, 128])
    reference.change_subsampling_conv_chunking_factor(1)
    assert long_result["text"] == reference.transcribe([load_audio(long)], verbose=False)[0].text


def test_bf16_runs_and_is_reported(capsys, tiny_nemo, clips):
    code = inference.main(["--model", str(tiny_nemo), "--dtype", "bf16", "--json", *clips])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["device"]["dtype"] == "bf16"
    assert all(r["text"] for r in doc["results"])


@pytest.mark.parametrize("engine", ["batched", "nemo"])
def test_bf16_tensors_flow_inside_encoder_and_decoder(tiny_nemo, clips, engine):
    """--dtype bf16 really computes in bf16: forward hooks inside the encoder (a conformer
    feed-forward), the prediction network's LSTM and the joint network see bf16 outputs, while the
    features stay fp32; at fp32 everything is fp32."""
    import torch

    from common.engine.transcriber import TranscribeOptions, transcribe_signals
    from common.model.loading import load_model

    loaded = load_model(str(tiny_nemo), "cpu")
    model = loaded.model
    watched = {"features": model.preprocessor, "encoder layer": model.encoder.layers[0].feed_forward1,
               "encoder": model.encoder, "prediction LSTM": model.decoder.prediction["dec_rnn"].lstm,
               "joint": model.joint.joint_net}
    seen: dict = {name: set() for name in watched}

    def recorder(name):
        def record(module, args, output):
            first = output[0] if isinstance(output, (tuple, list)) else output
            seen[name].add(first.dtype)
        return record

    handles = [module.register_forward_hook(recorder(name)) for name, module in watched.items()]
    signals = [load_audio(clip) for clip in clips[:2]]
    try:
        for dtype, expected in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            for values in seen.values():
                values.clear()
            transcribe_signals(loaded, signals, TranscribeOptions(dtype=dtype, engine=engine, batch_size=2))
            assert seen["features"] == {torch.float32}, (dtype, seen)
            for name in ("encoder layer", "encoder", "prediction LSTM", "joint"):
                assert seen[name] == {expected}, (dtype, name, seen)
    finally:
        for handle in handles:
            handle.remove()


def test_long_inputs_get_batches_of_their_own():
    assert plan_batches([50.0, 3.0, 2.0, 40.0], max_files=16, max_seconds=500, alone_above=30) == [[0], [3], [1, 2]]
