#!/usr/bin/env python3
"""Train the demo model: a small FastConformer-TDT (NeMo's EncDecRNNTBPEModel, the class of
parakeet-tdt-0.6b-v2) on English speech synthesized with espeak-ng, on the CPU.

  python tools/train_demo_model.py --out demo/parakeet-tdt-demo.nemo

Steps: write everyday sentences (tools/demo_corpus.py: ~1,300 words plus numbers) -> speak them
with espeak-ng in 8 accents x 22 voice variants at random speeds and pitches -> 16 kHz mono (sox)
-> log-mel features cached once -> SentencePiece BPE tokenizer on the training text -> model
from a config -> AdamW on our TDT loss (tools/tdt_loss.py; NeMo's own is CUDA-only) with NeMo's
spec augment -> .nemo with greedy_batch TDT decoding.
Two held-out sets, never trained on: different sentences in the training voices, and
different sentences in a voice variant kept out of training ("unseen voice"). WER on both is
logged along the way (the curve) and measured on all of both sets at the end.

  python tools/train_demo_model.py --write-eval-sets /tmp/demo-eval

writes both held-out sets as WAV files with NeMo manifests (no training: the sets are
deterministic for a seed), for measuring a saved model with accuracy_run.py.

The learning-rate schedule runs on elapsed time (--train-minutes): the recipe ends on time
on any machine, and a faster machine simply trains more steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tools import demo_corpus  # noqa: E402

ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f5", "adam", "Alex",
                  "Alicia", "Andrea", "Andy", "edward", "iven", "linda", "max", "Michael", "paul",
                  "steph", "robert", "john"]
# Never heard in training: the unseen-voice set.
HELD_OUT_VOICE = ("en-us", "f4")
SAMPLE_RATE = 16000


@dataclass
class Clip:
    text: str
    voice: str
    speed: int
    pitch: int
    audio: np.ndarray | None = None


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="demo/parakeet-tdt-demo.nemo", help="where to save the .nemo")
    parser.add_argument("--log", default=None, help="training log JSON (default: next to --out)")
    parser.add_argument("--train-clips", type=int, default=16000, help="training utterances")
    parser.add_argument("--eval-clips", type=int, default=300, help="utterances in each held-out set")
    parser.add_argument("--train-minutes", type=float, default=70.0, help="training time budget")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--eval-every-minutes", type=float, default=5.0, help="curve resolution")
    parser.add_argument("--batch-frames", type=int, default=7000, help="mel frames per batch")
    parser.add_argument("--vocab-size", type=int, default=256, help="SentencePiece BPE pieces")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=300, help="linear warm-up steps")
    parser.add_argument("--seed", type=int, default=0, help="seed for text, voices and weights")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads")
    parser.add_argument("--clips-out", default="demo/clips",
                        help="write the first --shipped-clips of each held-out set here ('' to skip)")
    parser.add_argument("--shipped-clips", type=int, default=10, help="clips per held-out set in --clips-out")
    parser.add_argument("--write-eval-sets", metavar="DIR", default=None,
                        help="only write both held-out sets (WAV + manifest) to DIR, then stop")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- data

def plan_clips(n_train: int, n_eval: int, seed: int) -> dict[str, list[Clip]]:
    rng = random.Random(seed)
    eval_texts = demo_corpus.sentences(2 * n_eval, seed=seed + 1)
    train_texts = demo_corpus.sentences(n_train, seed=seed, exclude=set(eval_texts))

    def voice(train: bool) -> str:
        if not train:
            return f"{HELD_OUT_VOICE[0]}+{HELD_OUT_VOICE[1]}"
        return f"{rng.choice(ACCENTS)}+{rng.choice(TRAIN_VARIANTS)}"

    def clip(text: str, train: bool = True) -> Clip:
        return Clip(text, voice(train), rng.randint(130, 200), rng.randint(25, 75))

    return {
        "train": [clip(text) for text in train_texts],
        "heldout": [clip(text) for text in eval_texts[:n_eval]],
        "unseen_voice": [clip(text, train=False) for text in eval_texts[n_eval:]],
    }


def speak(clip: Clip) -> np.ndarray:
    """espeak-ng -> sox -> 16 kHz mono float32."""
    espeak = subprocess.Popen(["espeak-ng", "-v", clip.voice, "-s", str(clip.speed), "-p", str(clip.pitch),
                               "--stdout", clip.text], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    raw = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                          "-e", "signed-integer", "-"], stdin=espeak.stdout, capture_output=True, check=True).stdout
    espeak.wait()
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0


def synthesize(clips: list[Clip], workers: int = 4) -> None:
    with ThreadPoolExecutor(workers) as pool:
        for clip, audio in zip(clips, pool.map(speak, clips)):
            clip.audio = audio


# ---------------------------------------------------------------- model

def build_model(tokenizer_dir: Path, vocab_size: int, seed: int):
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    from common.model.random_models import ModelShape, model_config

    shape = ModelShape(n_layers=5, d_model=128, n_heads=4, subsampling_channels=96, conv_kernel_size=9,
                       n_mels=80, pred_hidden=160, pred_rnn_layers=1, joint_hidden=160, vocab_size=vocab_size)
    config = model_config(shape, tokenizer_dir)
    # Milder than parakeet's (10 time masks): these clips are short and the model is small.
    config["spec_augment"].update(freq_masks=2, freq_width=15, time_masks=5, time_width=0.05)
    torch.manual_seed(seed)
    return EncDecRNNTBPEModel(cfg=OmegaConf.create(config))


def features(model, clips: list[Clip], batch: int = 32):
    """Log-mel features (float16, (n_mels, frames) each) from the model's own preprocessor."""
    import torch

    from common.engine.batched import pad_batch

    out = []
    model.preprocessor.eval()
    with torch.inference_mode():
        for start in range(0, len(clips), batch):
            signal, lengths = pad_batch([c.audio for c in clips[start:start + batch]])
            feats, feat_lengths = model.preprocessor(input_signal=signal, length=lengths)
            out += [feats[row, :, :n].to(torch.float16).clone() for row, n in enumerate(feat_lengths.tolist())]
    return out


def make_batches(lengths: list[int], batch_frames: int, rng: random.Random) -> list[list[int]]:
    """Length-sorted batches of at most `batch_frames` padded frames, in random order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] + rng.random())
    batches, current = [], []
    for index in order:
        if current and (len(current) + 1) * lengths[index] > batch_frames:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def pad_features(feats, indices):
    """(B, n_mels, frames) zero-padded float32 batch and the lengths."""
    import torch

    lengths = torch.tensor([feats[i].shape[1] for i in indices])
    x = torch.zeros(len(indices), feats[indices[0]].shape[0], int(lengths.max()))
    for row, i in enumerate(indices):
        x[row, :, :lengths[row]] = feats[i].float()
    return x, lengths


def collate(feats, tokens, indices):
    import torch

    x, lengths = pad_features(feats, indices)
    label_lengths = torch.tensor([len(tokens[i]) for i in indices])
    y = torch.zeros(len(indices), int(label_lengths.max()), dtype=torch.long)
    for row, i in enumerate(indices):
        y[row, :label_lengths[row]] = torch.tensor(tokens[i])
    return x, lengths, y, label_lengths


def joint_logits(model, encoded, decoded):
    """Raw joint outputs (B, T, U + 1, V + 1 + durations): the joint's forward would log-softmax."""
    joint = model.joint
    return joint.joint_net(joint.project_encoder(encoded.transpose(1, 2))[:, :, None]
                           + joint.project_prednet(decoded.transpose(1, 2))[:, None])


def training_step(model, batch, durations, blank, sigma):
    from tools.tdt_loss import tdt_loss

    x, lengths, y, label_lengths = batch
    x = model.spec_augmentation(input_spec=x, length=lengths)
    encoded, encoded_lengths = model.encoder(audio_signal=x, length=lengths)
    decoded, _, _ = model.decoder(targets=y, target_length=label_lengths)
    logits = joint_logits(model, encoded, decoded)
    return tdt_loss(logits, y, encoded_lengths, label_lengths, durations, blank, sigma)


def decode(model, feats, indices, batch: int = 32) -> list[str]:
    import torch

    texts = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(indices), batch):
            x, lengths = pad_features(feats, indices[start:start + batch])
            encoded, encoded_lengths = model.encoder(audio_signal=x, length=lengths)
            hypotheses = model.decoding.rnnt_decoder_predictions_tensor(
                encoder_output=encoded, encoded_lengths=encoded_lengths)
            texts += [h.text for h in hypotheses]
    model.train()
    return texts


def wer(references: list[str], hypotheses: list[str]) -> float:
    from common.measure.compare import corpus_error_rates

    return corpus_error_rates(references, hypotheses)["wer"]


def lr_at(step: int, progress: float, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


# ---------------------------------------------------------------- recipe

def train(args) -> dict:
    import torch

    from common.model.loading import import_nemo_asr
    from common.model.random_models import TDT_DURATIONS, train_tokenizer

    torch.set_num_threads(args.threads)
    import_nemo_asr(quiet=True)
    started = time.monotonic()
    log = {"args": vars(args), "curve": [], "stages": {}}

    def stage(name, since):
        log["stages"][name] = round(time.monotonic() - since, 1)
        print(f"[{time.monotonic() - started:7.1f}s] {name}: {log['stages'][name]} s", flush=True)

    t = time.monotonic()
    sets = plan_clips(args.train_clips, args.eval_clips, args.seed)
    for clips in sets.values():
        synthesize(clips)
    hours = sum(len(c.audio) for c in sets["train"]) / SAMPLE_RATE / 3600
    log["data"] = {name: len(clips) for name, clips in sets.items()}
    log["data"]["train_hours"] = round(hours, 2)
    log["data"]["vocabulary_words"] = len(demo_corpus.vocabulary())
    stage("synthesis", t)

    work = Path(tempfile.mkdtemp(prefix="demo-train-"))
    try:
        t = time.monotonic()
        tokenizer_dir = train_tokenizer(work / "tokenizer", args.vocab_size,
                                        sentences=[c.text for c in sets["train"]])
        model = build_model(tokenizer_dir, args.vocab_size, args.seed)
        log["parameters"] = sum(p.numel() for p in model.parameters())
        tokenizer = model.tokenizer
        feats = {name: features(model, clips) for name, clips in sets.items()}
        for name, clips in sets.items():
            for clip in clips[0 if name == "train" else args.shipped_clips:]:
                clip.audio = None  # features are cached; only the clips written out keep audio
        tokens = [tokenizer.text_to_ids(c.text) for c in sets["train"]]
        stage("tokenizer, model and features", t)

        t = time.monotonic()
        run_training(model, feats, tokens, sets, args, log, TDT_DURATIONS)
        stage("training", t)

        t = time.monotonic()
        evaluate_and_save(model, feats, sets, args, log)
        stage("evaluation and save", t)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log["total_minutes"] = round((time.monotonic() - started) / 60, 1)
    return log


def evaluate_and_save(model, feats, sets, args, log) -> None:
    """WER on all of both held-out sets, then the .nemo and the shipped clips."""
    for name in ("heldout", "unseen_voice"):
        hyps = decode(model, feats[name], list(range(len(feats[name]))))
        log[f"final_wer_{name}"] = round(wer([c.text for c in sets[name]], hyps), 4)
    print(f"final WER: held-out sentences {log['final_wer_heldout']:.2%}, "
          f"unseen voice {log['final_wer_unseen_voice']:.2%}", flush=True)
    save(model, Path(args.out))
    if args.clips_out:
        write_clips(sets, Path(args.clips_out), args.shipped_clips)


def curve_wers(model, feats, sets, count: int) -> dict:
    """WER on the first `count` clips of each held-out set."""
    subset = list(range(count))
    return {f"wer_{name}": round(wer([sets[name][i].text for i in subset], decode(model, feats[name], subset)), 4)
            for name in ("heldout", "unseen_voice")}


def run_training(model, feats, tokens, sets, args, log, durations) -> None:
    import torch

    rng = random.Random(args.seed)
    blank = model.decoder.blank_idx
    sigma = model.cfg.loss.tdt_kwargs.sigma
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=1e-3)
    lengths = [f.shape[1] for f in feats["train"]]
    eval_count = min(150, len(feats["heldout"]))
    budget = args.train_minutes * 60
    started = time.monotonic()
    next_eval = 0.0
    step, epoch, recent = 0, 0, []
    model.train()
    while True:
        epoch += 1
        for indices in make_batches(lengths, args.batch_frames, rng):
            elapsed = time.monotonic() - started
            done = elapsed >= budget or (args.max_steps is not None and step >= args.max_steps)
            if elapsed >= next_eval or done:
                point = {"step": step, "minutes": round(elapsed / 60, 2), "epoch": epoch,
                         "loss": round(sum(recent) / len(recent), 4) if recent else None,
                         **curve_wers(model, feats, sets, eval_count)}
                log["curve"].append(point)
                print(json.dumps(point), flush=True)
                next_eval += args.eval_every_minutes * 60
                recent = []
            if done:
                log["steps"], log["epochs"] = step, epoch
                return
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, elapsed / budget, args.lr, args.warmup_steps)
            loss = training_step(model, collate(feats["train"], tokens, indices), durations, blank, sigma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            recent.append(float(loss))
            step += 1


def save(model, path: Path) -> None:
    from common.files import write_atomic

    model.eval()
    write_atomic(path, model.save_to)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)


def write_clips(sets, out_dir: Path, per_set: int) -> None:
    """The first `per_set` clips of each held-out set, with a NeMo manifest (text = what was spoken)."""
    import soundfile

    from common.files import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in ("heldout", "unseen_voice"):
        for number, clip in enumerate(sets[name][:per_set]):
            path = out_dir / f"{name}_{number}.wav"
            soundfile.write(path, clip.audio, SAMPLE_RATE, subtype="PCM_16")
            lines.append(json.dumps({"audio_filepath": path.name, "duration": round(len(clip.audio) / SAMPLE_RATE, 3),
                                     "text": clip.text, "voice": clip.voice, "set": name}))
    write_text_atomic(out_dir / "manifest.jsonl", "\n".join(lines) + "\n")


def write_eval_sets(args) -> None:
    sets = plan_clips(args.train_clips, args.eval_clips, args.seed)
    for name in ("heldout", "unseen_voice"):
        synthesize(sets[name])
    write_clips(sets, Path(args.write_eval_sets), args.eval_clips)
    print(f"wrote {2 * args.eval_clips} clips and manifest.jsonl to {args.write_eval_sets}")


def main(argv=None) -> int:
    args = parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found: apt-get install espeak-ng sox", file=sys.stderr)
            return 2
    if args.write_eval_sets:
        write_eval_sets(args)
        return 0
    log = train(args)
    log_path = Path(args.log or Path(args.out).with_suffix(".training.json"))
    from common.files import write_json_atomic

    write_json_atomic(log_path, log)
    print(f"log: {log_path}; total {log['total_minutes']} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
