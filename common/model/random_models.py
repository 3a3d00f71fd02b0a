"""FastConformer-TDT models with random weights, built offline from a config.

`random:parakeet` has the class and shape of parakeet-tdt-0.6b-v2 (~618M parameters) and is
the stand-in for speed measurements; `random:tiny` (2 layers, d_model 64) is for smoke tests.
Their transcripts are noise. A built model is cached as a .nemo so the next run only restores it.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..files import write_atomic

RANDOM_PREFIX = "random:"
RANDOM_WEIGHTS_NOTE = "random weights: transcripts are not meaningful"
# Bump when a config below changes, so stale cached builds are not reused.
BUILD_VERSION = 2


@dataclass(frozen=True)
class ModelShape:
    n_layers: int
    d_model: int
    n_heads: int
    subsampling_channels: int
    conv_kernel_size: int
    n_mels: int
    pred_hidden: int
    pred_rnn_layers: int
    joint_hidden: int
    vocab_size: int


SHAPES = {
    # The real model's dimensions (see ../shared/FACTS.md, "The model").
    "parakeet": ModelShape(24, 1024, 8, 256, 9, 128, 640, 2, 640, 1024),
    "tiny": ModelShape(2, 64, 4, 64, 9, 80, 64, 1, 64, 64),
}
TDT_DURATIONS = [0, 1, 2, 3, 4]


def random_model_names() -> list[str]:
    return [RANDOM_PREFIX + name for name in SHAPES]


def default_cache_dir() -> Path:
    root = os.environ.get("PARAKEET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "parakeet-npu"
    )
    return Path(root)


def pseudo_english_corpus(n_sentences: int = 20000, seed: int = 0) -> list[str]:
    """Deterministic pseudo-words, varied enough for SentencePiece to fill a 1024-piece vocabulary."""
    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
              "y", "z", "br", "ch", "cl", "dr", "fl", "gr", "pl", "qu", "sh", "sl", "st", "th", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oo", "ou", "oa"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "ng", "ck", "st", "nd", "rt"]
    words = [
        "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(rng.randint(1, 3)))
        for _ in range(6000)
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) for _ in range(n_sentences)]


def train_tokenizer(out_dir: Path, vocab_size: int, sentences: list[str] | None = None) -> Path:
    """Train a SentencePiece BPE tokenizer into `out_dir` (tokenizer.model + vocab.txt) on
    `sentences`, by default a pseudo-English corpus."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences or pseudo_english_corpus()),
        model_prefix=str(out_dir / "tokenizer"),
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        num_threads=2,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
    if processor.get_piece_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {processor.get_piece_size()} pieces, expected {vocab_size}")
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    (out_dir / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return out_dir


def model_config(shape: ModelShape, tokenizer_dir: Path) -> dict:
    """A FastConformer-TDT config in the layout of parakeet-tdt-0.6b-v2's model_config.yaml."""
    return {
        "sample_rate": 16000,
        "model_defaults": {
            "enc_hidden": shape.d_model,
            "pred_hidden": shape.pred_hidden,
            "joint_hidden": shape.joint_hidden,
            "tdt_durations": TDT_DURATIONS,
            "num_tdt_durations": len(TDT_DURATIONS),
        },
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "train_ds": None,
        "test_ds": None,
        # NeMo reads validation_ds when transcribing; null there crashes.
        "validation_ds": {"manifest_filepath": None, "sample_rate": 16000, "batch_size": 1,
                          "shuffle": False, "use_start_end_token": False},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
            "window_stride": 0.01, "window": "hann", "features": shape.n_mels, "n_fft": 512,
            "log": True, "frame_splicing": 1, "dither": 1e-5, "pad_to": 0, "pad_value": 0.0,
        },
        "spec_augment": {
            "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
            "freq_masks": 2, "time_masks": 10, "freq_width": 27, "time_width": 0.05,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": shape.n_mels, "feat_out": -1, "n_layers": shape.n_layers,
            "d_model": shape.d_model, "subsampling": "dw_striding", "subsampling_factor": 8,
            "subsampling_conv_channels": shape.subsampling_channels, "causal_downsampling": False,
            "ff_expansion_factor": 4, "self_attention_model": "rel_pos", "n_heads": shape.n_heads,
            "att_context_size": [-1, -1], "att_context_style": "regular", "xscaling": True,
            "untie_biases": True, "pos_emb_max_len": 5000, "conv_kernel_size": shape.conv_kernel_size,
            "conv_norm_type": "batch_norm", "conv_context_size": None, "dropout": 0.1,
            "dropout_pre_encoder": 0.1, "dropout_emb": 0.0, "dropout_att": 0.1,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None, "random_state_sampling": False, "blank_as_pad": True,
            "prednet": {"pred_hidden": shape.pred_hidden, "pred_rnn_layers": shape.pred_rnn_layers,
                        # torch warns about LSTM dropout with a single layer
                        "t_max": None, "dropout": 0.2 if shape.pred_rnn_layers > 1 else 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None, "preserve_memory": False, "fuse_loss_wer": False,
            "fused_batch_size": 4, "num_extra_outputs": len(TDT_DURATIONS),
            "jointnet": {"joint_hidden": shape.joint_hidden, "activation": "relu", "dropout": 0.2},
        },
        "decoding": {
            "strategy": "greedy_batch", "model_type": "tdt", "durations": TDT_DURATIONS,
            "greedy": {"max_symbols": 10},
        },
        "loss": {
            "loss_name": "tdt",
            "tdt_kwargs": {"fastemit_lambda": 0.0, "clamp": -1.0, "durations": TDT_DURATIONS,
                           "sigma": 0.02, "omega": 0.1},
        },
        "optim": None,
    }


def save_random_model(size: str, path: Path, seed: int = 0) -> Path:
    """Build an EncDecRNNTBPEModel of `size` with random weights (deterministic for a seed) and
    save it to `path` atomically: concurrent builders never see a partial file."""
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    shape = SHAPES[size]
    # The tokenizer files must outlive save_to(), which packs them into the archive.
    with tempfile.TemporaryDirectory(prefix="parakeet-tok-") as tok_dir:
        train_tokenizer(Path(tok_dir), shape.vocab_size)
        torch.manual_seed(seed)
        model = EncDecRNNTBPEModel(cfg=OmegaConf.create(model_config(shape, Path(tok_dir))))
        return write_atomic(path, model.save_to)


def _size(name: str) -> str:
    size = name[len(RANDOM_PREFIX):] if name.startswith(RANDOM_PREFIX) else name
    if size not in SHAPES:
        raise KeyError(size)
    return size


def random_model_path(name: str, cache_dir: Path | None = None) -> Path:
    """Where the .nemo of `random:<size>` is cached (whether or not it is built yet)."""
    return (cache_dir or default_cache_dir()) / f"random-{_size(name)}-v{BUILD_VERSION}.nemo"


def cached_random_model(name: str, cache_dir: Path | None = None) -> Path:
    """Path of the cached .nemo for `random:<size>`, building and saving it on first use. One
    process builds it; others asking meanwhile wait for that build instead of each writing their
    own file (a rewritten .nemo would invalidate the extractions the others are reading)."""
    from filelock import FileLock

    path = random_model_path(name, cache_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if not path.is_file():  # nobody built it while we waited
            save_random_model(_size(name), path)
    return path
