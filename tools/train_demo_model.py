#!/usr/bin/env python3
"""Train the demo model: a small FastConformer-TDT (NeMo's EncDecRNNTBPEModel, the class of
parakeet-tdt-0.6b-v2) on English speech synthesized with espeak-ng, on the CPU.

  python tools/train_demo_model.py            # writes demo/parakeet-tdt-demo.nemo and its log

Steps: training text from named sources (tools/open_corpus.py: WordNet's usage examples, the
first demo's everyday sentences, numbers, dates, names and places, frequency-drawn words) ->
spoken by espeak-ng in 8 accents x 32 voice variants at random speeds and pitches -> 16 kHz
mono (sox) -> log-mel features -> SentencePiece BPE pieces (an open vocabulary) -> model from a
config -> AdamW on our TDT loss (tools/tdt_loss.py; NeMo's own is CUDA-only) with NeMo's spec
augment -> .nemo with greedy_batch TDT decoding.

Three held-out sets, never trained on: the first demo's held-out sentences in the training
voices ("heldout") and in a voice variant kept out of training ("unseen_voice"), and sentences
of another source (the fortunes package) in four variants never heard ("fortunes"). WER on
all three is logged along the way (the curve) and measured on all of them at the end.

Resumable: the data (features, tokenizer) and a checkpoint every --eval-every-minutes live in
--work-dir; Ctrl-C or SIGTERM saves the checkpoint before leaving, and the same command run
again continues where it stopped, so training can span several sittings. The learning-rate
schedule runs on training time (--train-minutes), counted over all sittings: the recipe ends
on time on any machine, and a faster machine simply trains more steps.

  python tools/train_demo_model.py --write-eval-sets /tmp/demo-eval

writes the three held-out sets as WAV files with a NeMo manifest (no training: the sets are
deterministic for a seed), for measuring a saved model with accuracy_run.py.
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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tools import demo_corpus, open_corpus  # noqa: E402

ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f5", "adam", "Alex",
                  "Alicia", "Andrea", "Andy", "edward", "iven", "linda", "max", "Michael", "paul",
                  "steph", "robert", "john", "m7", "Denis", "Steph2", "anika", "shelby", "travis",
                  "victor", "norbert"]
# Never heard in training: the unseen-voice set (the first demo's), and the fortunes set's variants.
HELD_OUT_VOICE = ("en-us", "f4")
UNHEARD_VARIANTS = ["f4", "Annie", "Lee", "Mike"]
# How many of the first demo's training sentences the template plan makes (it fixes its held-out sets).
TEMPLATE_TRAIN_SENTENCES = 16000
EVAL_SETS = ("heldout", "unseen_voice", "fortunes")
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
    parser.add_argument("--work-dir", default="demo/.training",
                        help="data and checkpoint; a run finds its own there and continues")
    parser.add_argument("--train-clips", type=int, default=48000, help="training utterances")
    parser.add_argument("--eval-clips", type=int, default=300, help="utterances in each held-out set")
    parser.add_argument("--train-minutes", type=float, default=135.0, help="training time budget, all sittings")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--eval-every-minutes", type=float, default=5.0, help="curve and checkpoint interval")
    parser.add_argument("--batch-frames", type=int, default=7000, help="mel frames per batch")
    parser.add_argument("--vocab-size", type=int, default=512, help="SentencePiece BPE pieces")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=400, help="linear warm-up steps")
    parser.add_argument("--init", default=None, metavar="NEMO",
                        help="start from this .nemo's weights and shape (the first demo model) instead of from scratch")
    parser.add_argument("--seed", type=int, default=0, help="seed for text, voices and weights")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                        help="training arithmetic: bf16 autocast (fp32 weights, loss in fp32) or fp32; "
                             "auto: bf16 where the CPU has native bf16 (AMX or AVX512-BF16: steps 1.2x-1.3x "
                             "faster, measured), else fp32")
    parser.add_argument("--clips-out", default="demo/clips",
                        help="write the first --shipped-clips of the first demo's two held-out sets here ('' to skip)")
    parser.add_argument("--shipped-clips", type=int, default=10, help="clips per held-out set in --clips-out")
    parser.add_argument("--write-eval-sets", metavar="DIR", default=None,
                        help="only write the three held-out sets (WAV + manifest) to DIR, then stop")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- data

def template_sets(n_train: int, n_eval: int, seed: int) -> dict[str, list[Clip]]:
    """The first demo's plan: its template sentences, training voices and its two held-out sets."""
    rng = random.Random(seed)
    eval_texts = demo_corpus.sentences(2 * n_eval, seed=seed + 1)
    train_texts = demo_corpus.sentences(n_train, seed=seed, exclude=set(eval_texts))

    def voice(train: bool) -> str:
        if not train:
            return f"{HELD_OUT_VOICE[0]}+{HELD_OUT_VOICE[1]}"
        return f"{rng.choice(ACCENTS)}+{rng.choice(TRAIN_VARIANTS[:24])}"

    def clip(text: str, train: bool = True) -> Clip:
        return Clip(text, voice(train), rng.randint(130, 200), rng.randint(25, 75))

    return {
        "train": [clip(text) for text in train_texts],
        "heldout": [clip(text) for text in eval_texts[:n_eval]],
        "unseen_voice": [clip(text, train=False) for text in eval_texts[n_eval:]],
    }


def eval_sets(n_eval: int, seed: int) -> dict[str, list[Clip]]:
    """The three held-out sets, and the template sentences the training text may use."""
    templates = template_sets(TEMPLATE_TRAIN_SENTENCES, n_eval, seed)
    rng = random.Random(seed + 2)
    fortunes = [Clip(text, f"{rng.choice(ACCENTS)}+{rng.choice(UNHEARD_VARIANTS)}", rng.randint(130, 200),
                     rng.randint(25, 75)) for text in open_corpus.evaluation_texts(n_eval, seed + 2)]
    return {"heldout": templates["heldout"], "unseen_voice": templates["unseen_voice"], "fortunes": fortunes,
            "templates": [c.text for c in templates["train"]]}


def plan_clips(n_train: int, n_eval: int, seed: int) -> dict[str, list[Clip]]:
    sets = eval_sets(n_eval, seed)
    held_out = {c.text for name in EVAL_SETS for c in sets[name]}
    texts = open_corpus.training_texts(n_train, seed, sets.pop("templates"), exclude=held_out)
    rng = random.Random(seed + 3)
    sets["train"] = [Clip(text, f"{rng.choice(ACCENTS)}+{rng.choice(TRAIN_VARIANTS)}", rng.randint(130, 200),
                          rng.randint(25, 75)) for text in texts]
    return sets


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

def build_model(tokenizer_dir: Path, vocab_size: int, seed: int, init: str | None = None):
    """The model, from scratch or, with `init`, shaped like that .nemo and starting from every
    weight of it that fits (encoder, prediction network, joint projections; not what the new
    vocabulary resizes: the embedding and the joint's output)."""
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    from common.model.random_models import ModelShape, model_config

    start = EncDecRNNTBPEModel.restore_from(init, map_location="cpu") if init else None
    shape = shape_of(start.cfg, vocab_size) if start is not None else ModelShape(
        n_layers=6, d_model=176, n_heads=4, subsampling_channels=128, conv_kernel_size=9, n_mels=80,
        pred_hidden=256, pred_rnn_layers=1, joint_hidden=256, vocab_size=vocab_size)
    config = model_config(shape, tokenizer_dir)
    # Milder than parakeet's (10 time masks): these clips are short and the model is small.
    config["spec_augment"].update(freq_masks=2, freq_width=15, time_masks=5, time_width=0.05)
    torch.manual_seed(seed)
    model = EncDecRNNTBPEModel(cfg=OmegaConf.create(config))
    if start is not None:
        own, theirs = model.state_dict(), start.state_dict()
        fitting = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        shared = shared_pieces(start.tokenizer.tokenizer, model.tokenizer.tokenizer)
        fitting.update(transferred_rows(theirs, own, shared))
        model.load_state_dict(fitting, strict=False)
        print(f"started from {init}: {len(fitting)} of {len(own)} tensors; {len(shared)} of "
              f"{model.tokenizer.vocab_size} pieces carried over", flush=True)
    return model


# Tensors with a row per vocabulary entry: blank after the pieces, then (the joint's output) durations.
VOCABULARY_ROWS = ("decoder.prediction.embed.weight", "joint.joint_net.2.weight", "joint.joint_net.2.bias")


def shared_pieces(old, new) -> dict[int, int]:
    """new piece id -> old piece id, for the pieces both SentencePiece vocabularies have."""
    old_ids = {old.id_to_piece(i): i for i in range(old.get_piece_size())}
    return {i: old_ids[piece] for i in range(new.get_piece_size())
            if (piece := new.id_to_piece(i)) in old_ids}


def transferred_rows(old_state, new_state, shared: dict[int, int]) -> dict:
    """The vocabulary-sized tensors of the new model, with the rows of shared pieces, the blank and
    the durations taken from the old one: what the old model knew of a piece is kept."""
    old_pieces = old_state[VOCABULARY_ROWS[0]].shape[0] - 1
    new_pieces = new_state[VOCABULARY_ROWS[0]].shape[0] - 1
    out = {}
    for key in VOCABULARY_ROWS:
        old, new = old_state[key], new_state[key].clone()
        rows = dict(shared)
        rows.update({new_pieces + j: old_pieces + j for j in range(old.shape[0] - old_pieces)})  # blank, durations
        index_new, index_old = zip(*rows.items())
        if key.endswith("bias"):
            # Pieces the old model never had start unlikely, so that at step 0 the model decodes
            # as the old one did with the pieces both have.
            new[:] = old[:old_pieces].min() - 4.0
        new[list(index_new)] = old[list(index_old)]
        out[key] = new
    return out


def shape_of(cfg, vocab_size: int):
    from common.model.random_models import ModelShape

    return ModelShape(n_layers=cfg.encoder.n_layers, d_model=cfg.encoder.d_model, n_heads=cfg.encoder.n_heads,
                      subsampling_channels=cfg.encoder.subsampling_conv_channels,
                      conv_kernel_size=cfg.encoder.conv_kernel_size, n_mels=cfg.encoder.feat_in,
                      pred_hidden=cfg.decoder.prednet.pred_hidden, pred_rnn_layers=cfg.decoder.prednet.pred_rnn_layers,
                      joint_hidden=cfg.joint.jointnet.joint_hidden, vocab_size=vocab_size)


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


def spoken_features(model, clips: list[Clip], keep_audio: int = 0, chunk: int = 2000):
    """Speak and featurize `clips` a chunk at a time (all their audio at once would not fit in
    memory); the first `keep_audio` clips keep their audio."""
    out = []
    for start in range(0, len(clips), chunk):
        part = clips[start:start + chunk]
        synthesize(part)
        out += features(model, part)
        for number, clip in enumerate(part, start):
            if number >= keep_audio:
                clip.audio = None
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


def training_step(model, batch, durations, blank, sigma, bf16: bool = False):
    import torch

    from tools.tdt_loss import tdt_loss

    x, lengths, y, label_lengths = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        x = model.spec_augmentation(input_spec=x, length=lengths)
        encoded, encoded_lengths = model.encoder(audio_signal=x, length=lengths)
        decoded, _, _ = model.decoder(targets=y, target_length=label_lengths)
        logits = joint_logits(model, encoded, decoded)
    return tdt_loss(logits.float(), y, encoded_lengths, label_lengths, durations, blank, sigma)


def make_optimizer(model, lr: float):
    import torch

    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=1e-3)


def optimizer_step(model, optimizer, loss) -> None:
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def bf16_training(dtype: str) -> bool:
    """--dtype resolved: bf16 autocast pays on CPUs with native bf16 (AMX, AVX512-BF16); elsewhere
    it is emulated, so fp32."""
    from common.device.accelerators import NATIVE_BF16_FLAGS, cpu_flags

    return dtype == "bf16" or (dtype == "auto" and bool(NATIVE_BF16_FLAGS & cpu_flags()))


def bf16_lstm_unsupported() -> str | None:
    """Why this CPU cannot train the LSTM under bf16 autocast, or None if it can: oneDNN has no
    bf16 LSTM kernel for CPUs without AVX-512 (seen on an AVX2-only AMD EPYC), so the step fails."""
    import torch

    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = torch.nn.LSTM(4, 4, batch_first=True)(torch.randn(1, 2, 4))
        output.float().sum().backward()
    except RuntimeError as error:
        return f"bf16 autocast cannot run the LSTM on this CPU ({str(error).splitlines()[0][:80]})"
    return None


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


# ---------------------------------------------------------------- the work directory

DATA_ARGS = ("train_clips", "eval_clips", "seed", "vocab_size")


def prepare_data(args, work: Path, log: dict):
    """Texts, features, the tokenizer and the shipped clips' audio: made once, then read from `work`."""
    import torch

    from common.files import write_atomic
    from common.model.random_models import train_tokenizer

    key = {name: getattr(args, name) for name in DATA_ARGS}
    path = work / "data.pt"
    if path.exists():
        data = torch.load(path, weights_only=False)
        if data["key"] != key:
            raise SystemExit(f"error: {work} holds the data of another run ({data['key']}, not {key}): "
                             "pass another --work-dir or delete it")
        print(f"data: read from {path}", flush=True)
        return data
    started = time.monotonic()
    sets = plan_clips(args.train_clips, args.eval_clips, args.seed)
    tokenizer_dir = train_tokenizer(work / "tokenizer", args.vocab_size, sentences=[c.text for c in sets["train"]])
    model = build_model(tokenizer_dir, args.vocab_size, args.seed)
    data = {"key": key, "texts": {name: [c.text for c in clips] for name, clips in sets.items()},
            "voices": {name: [c.voice for c in clips] for name, clips in sets.items()}, "feats": {}}
    for name, clips in sets.items():
        keep = 0 if name == "train" else args.shipped_clips
        data["feats"][name] = spoken_features(model, clips, keep_audio=keep)
        print(f"[{time.monotonic() - started:7.1f}s] {name}: {len(clips)} clips spoken", flush=True)
    data["audio"] = {name: [c.audio for c in sets[name][:args.shipped_clips]] for name in EVAL_SETS}
    data["tokens"] = [model.tokenizer.text_to_ids(text) for text in data["texts"]["train"]]
    write_atomic(path, lambda tmp: torch.save(data, tmp))
    log["stages"]["synthesis, tokenizer and features"] = round(time.monotonic() - started, 1)
    return data


def load_checkpoint(path: Path):
    import torch

    return torch.load(path, weights_only=False) if path.exists() else None


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    import torch

    from common.files import write_atomic

    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **state}
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


# ---------------------------------------------------------------- recipe

def train(args) -> dict:
    import torch

    from common.model.loading import import_nemo_asr
    from common.model.random_models import TDT_DURATIONS

    torch.set_num_threads(args.threads)
    import_nemo_asr(quiet=True)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log = {"args": {k: v for k, v in vars(args).items() if k != "write_eval_sets"}, "stages": {}}
    data = prepare_data(args, work, log)
    model = build_model(work / "tokenizer", args.vocab_size, args.seed, args.init)
    log["parameters"] = sum(p.numel() for p in model.parameters())
    log["data"] = {name: len(texts) for name, texts in data["texts"].items()}
    log["data"]["train_hours"] = round(sum(f.shape[1] for f in data["feats"]["train"]) / 100 / 3600, 2)
    log["data"]["train_words"] = len({w for text in data["texts"]["train"] for w in text.split()})
    log["data"]["sources"] = open_corpus.SOURCES

    state = run_training(model, data, args, work / "checkpoint.pt", TDT_DURATIONS)
    log.update(curve=state["curve"], sittings=state["sittings"], steps=state["step"], epochs=state["epoch"],
               training_minutes=round(state["trained_seconds"] / 60, 1))
    t = time.monotonic()
    evaluate_and_save(model, data, args, log)
    log["stages"]["evaluation and save"] = round(time.monotonic() - t, 1)
    log["this_sitting_minutes"] = round((time.monotonic() - started) / 60, 1)
    return log


def evaluate_and_save(model, data, args, log) -> None:
    """WER on all of the three held-out sets, then the .nemo and the shipped clips."""
    for name in EVAL_SETS:
        feats = data["feats"][name]
        log[f"final_wer_{name}"] = round(wer(data["texts"][name], decode(model, feats, list(range(len(feats))))), 4)
    print("final WER: " + ", ".join(f"{name} {log[f'final_wer_{name}']:.2%}" for name in EVAL_SETS), flush=True)
    save(model, Path(args.out))
    if args.clips_out:
        write_clips(data, Path(args.clips_out), args.shipped_clips, ("heldout", "unseen_voice"))


def curve_wers(model, data, count: int) -> dict:
    """WER on the first `count` clips of each held-out set."""
    subset = list(range(count))
    return {f"wer_{name}": round(wer(data["texts"][name][:count], decode(model, data["feats"][name], subset)), 4)
            for name in EVAL_SETS}


def run_training(model, data, args, checkpoint_path: Path, durations) -> dict:
    """Train until --train-minutes of training time (all sittings) or --max-steps; Ctrl-C or
    SIGTERM saves the checkpoint and leaves with exit 130."""
    import torch

    from common import signals
    from common.errors import Terminated

    blank = model.decoder.blank_idx
    sigma = model.cfg.loss.tdt_kwargs.sigma
    optimizer = make_optimizer(model, args.lr)
    state = {"step": 0, "epoch": 1, "batch_in_epoch": 0, "trained_seconds": 0.0, "next_eval": 0.0,
             "curve": [], "recent": [], "sittings": []}
    model_key = {"init": args.init, "parameters": sum(p.numel() for p in model.parameters()),
                 "start": "shared pieces carried over" if args.init else "scratch"}
    state["model_key"] = model_key
    saved = load_checkpoint(checkpoint_path)
    if saved and saved.get("model_key") != model_key:
        raise SystemExit(f"error: {checkpoint_path} is the checkpoint of another model ({saved.get('model_key')}, "
                         f"not {model_key}): pass another --work-dir or delete it")
    if saved:
        model.load_state_dict(saved.pop("model"))
        optimizer.load_state_dict(saved.pop("optimizer"))
        state.update(saved)
        print(f"resuming at step {state['step']} after {state['trained_seconds'] / 60:.1f} of "
              f"{args.train_minutes} training minutes", flush=True)
    state["sittings"].append({"from_minute": round(state["trained_seconds"] / 60, 2), "started": time.time()})
    tokens, feats = data["tokens"], data["feats"]["train"]
    lengths = [f.shape[1] for f in feats]
    eval_count = min(150, args.eval_clips)
    budget = args.train_minutes * 60
    bf16 = bf16_training(args.dtype)
    state["sittings"][-1]["dtype"] = "bf16" if bf16 else "fp32"
    sitting_start, trained_before = time.monotonic(), state["trained_seconds"]
    restore = signals.install()
    model.train()
    try:
        while True:
            batches = make_batches(lengths, args.batch_frames, random.Random(args.seed * 1000 + state["epoch"]))
            for indices in batches[state["batch_in_epoch"]:]:
                state["trained_seconds"] = trained_before + time.monotonic() - sitting_start
                done = (state["trained_seconds"] >= budget
                        or (args.max_steps is not None and state["step"] >= args.max_steps))
                if state["trained_seconds"] >= state["next_eval"] or done:
                    curve_point(model, data, state, eval_count)
                    state["next_eval"] += args.eval_every_minutes * 60
                    with signals.deferred():
                        save_checkpoint(checkpoint_path, model, optimizer, state)
                if done:
                    return state
                with signals.deferred():
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(state["step"], state["trained_seconds"] / budget, args.lr,
                                            args.warmup_steps)
                    loss = training_step(model, collate(feats, tokens, indices), durations, blank, sigma, bf16)
                    optimizer_step(model, optimizer, loss)
                    state["recent"].append(float(loss))
                    state["step"] += 1
                    state["batch_in_epoch"] += 1
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    except (KeyboardInterrupt, Terminated):
        state["trained_seconds"] = trained_before + time.monotonic() - sitting_start
        save_checkpoint(checkpoint_path, model, optimizer, state)
        print(f"\nstopped at step {state['step']} after {state['trained_seconds'] / 60:.1f} of "
              f"{args.train_minutes} training minutes; checkpoint {checkpoint_path}. "
              "Run the same command again to continue.", file=sys.stderr, flush=True)
        raise SystemExit(130)
    finally:
        restore()


def curve_point(model, data, state, eval_count: int) -> None:
    recent = state["recent"]
    point = {"step": state["step"], "minutes": round(state["trained_seconds"] / 60, 2), "epoch": state["epoch"],
             "loss": round(sum(recent) / len(recent), 4) if recent else None, **curve_wers(model, data, eval_count)}
    state["curve"].append(point)
    state["recent"] = []
    print(json.dumps(point), flush=True)


def save(model, path: Path) -> None:
    from common.files import write_atomic

    model.eval()
    write_atomic(path, model.save_to)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)


def write_clips(data, out_dir: Path, per_set: int, names=EVAL_SETS) -> None:
    """The first `per_set` clips of each named held-out set, with a NeMo manifest (text = what was spoken)."""
    import soundfile

    from common.files import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        for number, audio in enumerate(data["audio"][name][:per_set]):
            path = out_dir / f"{name}_{number}.wav"
            soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
            lines.append(json.dumps({"audio_filepath": path.name, "duration": round(len(audio) / SAMPLE_RATE, 3),
                                     "text": data["texts"][name][number], "voice": data["voices"][name][number],
                                     "set": name}))
    write_text_atomic(out_dir / "manifest.jsonl", "\n".join(lines) + "\n")


def write_eval_sets(args) -> None:
    sets = eval_sets(args.eval_clips, args.seed)
    data = {"audio": {}, "texts": {}, "voices": {}}
    for name in EVAL_SETS:
        synthesize(sets[name])
        data["audio"][name] = [c.audio for c in sets[name]]
        data["texts"][name] = [c.text for c in sets[name]]
        data["voices"][name] = [c.voice for c in sets[name]]
    write_clips(data, Path(args.write_eval_sets), args.eval_clips)
    print(f"wrote {len(EVAL_SETS) * args.eval_clips} clips and manifest.jsonl to {args.write_eval_sets}")


def main(argv=None) -> int:
    args = parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found: apt-get install espeak-ng sox", file=sys.stderr)
            return 2
    missing = open_corpus.missing_sources()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    if args.write_eval_sets:
        write_eval_sets(args)
        return 0
    log = train(args)
    log_path = Path(args.log or Path(args.out).with_suffix(".training.json"))
    from common.files import write_json_atomic

    write_json_atomic(log_path, log)
    print(f"log: {log_path}; {log['training_minutes']} training minutes in {len(log['sittings'])} sitting(s)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
