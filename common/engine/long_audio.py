"""Long audio: what changes in the model while a file above the long-audio threshold runs
alone. Attention becomes local (NeMo's documented setting: memory linear in audio length); the
subsampling convolutions run over the features in overlapping pieces of time, because their
first layer alone would otherwise hold 256 channels x half the frames x 64 bins at once (4 GB
for 21 minutes of audio in parakeet) whatever the attention; and the log-mel features are
computed in overlapping pieces too (the STFT of 20 M samples and its copies hold about 0.9 GB),
then normalized over the whole file as in one pass."""

from __future__ import annotations

import contextlib
from typing import Optional

from .forwards import wrapped_forward

LOCAL_ATTENTION = ("rel_pos_local_attn", [128, 128])
# Feature frames (10 ms each) per subsampling piece, and the context on either side of it: far
# wider than the convolutions' receptive field (15 frames for 3 layers of kernel 3, stride 2),
# so every output frame kept is computed from exactly the inputs it has in one pass.
PIECE_FRAMES = 4096
CONTEXT_FRAMES = 64
# Encoder frames (80 ms each) per piece of a Conformer layer under local attention; its context:
# the attention's window, half the convolution's kernel, and this margin.
ATTENTION_PIECE_FRAMES = 2048
LAYER_CONTEXT_MARGIN = 8


@contextlib.contextmanager
def long_audio_encoder(model):
    """Local attention and subsampling and features in pieces inside the block; the model as it
    was after. Yields the attention's description, which a long file's record carries."""
    with local_attention(model.encoder), features_in_pieces(model.preprocessor.featurizer), \
            subsampling_in_pieces(model.encoder.pre_encode):
        yield f"{LOCAL_ATTENTION[0]} {LOCAL_ATTENTION[1]}"


@contextlib.contextmanager
def local_attention(encoder):
    """NeMo's own switch to local attention (`change_attention_model`), its new modules built on
    the meta device and then given the existing weights (`assign=True`): NeMo's switch allocates
    and copies every layer's attention weights (and pages in the originals), about 0.9 GB for
    parakeet, twice per long file. After the block the original modules are put back as they were."""
    import torch

    layers = [m for m in encoder.modules() if hasattr(m, "self_attn") and hasattr(m, "self_attention_model")]
    saved = [(layer, layer.self_attn, layer.self_attention_model) for layer in layers]
    pos_enc, attention, context = encoder.pos_enc, encoder.self_attention_model, encoder.att_context_size
    try:
        with torch.device("meta"):
            encoder.change_attention_model(LOCAL_ATTENTION[0], LOCAL_ATTENTION[1], update_config=False)
        for layer, original, _ in saved:
            layer.self_attn.load_state_dict(original.state_dict(keep_vars=True), strict=False, assign=True)
        encoder.set_max_audio_length(encoder.pos_emb_max_len)  # the new encoding's table on the real device
        encoder.eval()  # the new attention modules are created in training mode (dropout on)
        with contextlib.ExitStack() as stack:
            for layer in layers:
                stack.enter_context(layer_in_pieces(layer, layer_reach(layer) + LAYER_CONTEXT_MARGIN))
            yield
    finally:
        for layer, original, kind in saved:
            layer.self_attn, layer.self_attention_model = original, kind
        encoder.pos_enc, encoder.self_attention_model, encoder.att_context_size = pos_enc, attention, context


def layer_reach(layer) -> int:
    """How many frames on either side of an output frame a Conformer layer with local attention
    reads: the attention's window, then half the depthwise convolution's kernel."""
    kernel = getattr(getattr(layer, "conv", None), "depthwise_conv", None)
    return max(LOCAL_ATTENTION[1]) + (kernel.kernel_size[0] // 2 if kernel is not None else 0)


@contextlib.contextmanager
def layer_in_pieces(layer, context_frames: int, piece_frames: Optional[int] = None):
    """Make a Conformer layer with local attention run a single long sequence in pieces of
    `piece_frames` with `context_frames` on each side (its receptive field: the attention's
    window plus half the convolution's kernel), keeping of each piece its own rows. In one pass
    NeMo's sliding-chunk attention holds several heads x frames x (2 window + 1) score tensors and
    the feed-forward modules frames x 4096 activations at once (about 1.5 GB for 21 minutes)."""
    import torch

    piece_frames = piece_frames or ATTENTION_PIECE_FRAMES

    def in_pieces(original):
        def forward(x, att_mask=None, pos_emb=None, pad_mask=None, cache_last_channel=None, cache_last_time=None):
            frames = x.shape[1]
            if (cache_last_channel is not None or cache_last_time is not None or att_mask is not None
                    or x.shape[0] != 1 or frames <= piece_frames + 2 * context_frames):
                return original(x=x, att_mask=att_mask, pos_emb=pos_emb, pad_mask=pad_mask,
                                cache_last_channel=cache_last_channel, cache_last_time=cache_last_time)
            kept = []
            for start in range(0, frames, piece_frames):
                stop = min(frames, start + piece_frames)
                low, high = max(0, start - context_frames), min(frames, stop + context_frames)
                out = original(x=x[:, low:high], pos_emb=pos_emb,
                               pad_mask=None if pad_mask is None else pad_mask[:, low:high])
                kept.append(out[:, start - low: stop - low])
            return torch.cat(kept, dim=1)
        return forward

    with wrapped_forward(layer, in_pieces):
        yield


@contextlib.contextmanager
def subsampling_in_pieces(pre_encode, piece_frames: int = PIECE_FRAMES, context_frames: int = CONTEXT_FRAMES):
    """Make a striding convolutional subsampling module (FastConformer's) run a single long
    input in pieces of `piece_frames` with `context_frames` on each side, keeping of each piece
    the output frames that belong to it. Other modules and batched inputs run as they are."""
    factor = getattr(pre_encode, "subsampling_factor", 0)
    if (getattr(pre_encode, "_subsampling", None) not in ("dw_striding", "striding")
            or getattr(pre_encode, "is_causal", True) or piece_frames % factor or context_frames % factor):
        yield
        return

    def in_pieces(original):
        def forward(x, lengths):
            if x.shape[0] != 1 or x.shape[1] <= piece_frames + 2 * context_frames:
                return original(x, lengths)
            return _in_pieces(original, x, lengths, factor, piece_frames, context_frames)
        return forward

    with wrapped_forward(pre_encode, in_pieces):
        yield


def _in_pieces(subsample, x, lengths, factor: int, piece_frames: int, context_frames: int):
    """`subsample` over x[:, low:high] for each piece, the frames past the input's valid length
    masked as in one pass; of each piece the output rows of its own frames are kept."""
    import torch

    frames, valid = x.shape[1], int(lengths[0])
    kept, kept_valid = [], 0
    for start in range(0, frames, piece_frames):
        low, high = max(0, start - context_frames), min(frames, start + piece_frames + context_frames)
        piece_valid = torch.tensor([min(max(valid - low, 0), high - low)], device=lengths.device)
        out, out_lengths = subsample(x[:, low:high], piece_valid)
        first = (start - low) // factor
        last = first + piece_frames // factor if start + piece_frames < frames else out.shape[1]
        kept.append(out[:, first:last])
        kept_valid += min(max(int(out_lengths[0]) - first, 0), last - first)
    return torch.cat(kept, dim=1), torch.full_like(out_lengths, kept_valid)


@contextlib.contextmanager
def features_in_pieces(featurizer, piece_frames: int = PIECE_FRAMES, context_frames: int = CONTEXT_FRAMES):
    """Make NeMo's FilterbankFeatures compute a single long input's log-mel frames in pieces of
    `piece_frames` with `context_frames` of audio on each side (each frame depends only on the
    n_fft samples around it, and the first on the preemphasis of the sample before), then
    normalize, mask and pad the whole as its forward does. Other inputs, and settings whose frames
    are not centred (exact_pad, frame splicing), run as they are."""
    hop, n_fft = getattr(featurizer, "hop_length", 0), getattr(featurizer, "n_fft", 0)
    if (not hop or getattr(featurizer, "stft_pad_amount", None) is not None or getattr(featurizer, "exact_pad", False)
            or getattr(featurizer, "frame_splicing", 1) != 1 or context_frames * hop <= n_fft // 2 + 1):
        yield
        return

    def in_pieces(original):
        def forward(x, seq_len, linear_spec=False):
            if (linear_spec or featurizer.training or x.shape[0] != 1 or int(seq_len[0]) != x.shape[1]
                    or x.shape[1] <= (piece_frames + 2 * context_frames) * hop):
                return original(x, seq_len, linear_spec=linear_spec) if linear_spec else original(x, seq_len)
            return _features_in_pieces(featurizer, original, x, seq_len, piece_frames, context_frames)
        return forward

    with wrapped_forward(featurizer, in_pieces):
        yield


def _features_in_pieces(featurizer, features, x, seq_len, piece_frames: int, context_frames: int):
    """Unnormalized log-mel frames of x[:, low*hop:high*hop] for each piece (NeMo's own forward
    with normalization and padding off), of each piece its own frames, then NeMo's tail."""
    import torch
    from nemo.collections.asr.parts.preprocessing.features import normalize_batch

    hop, samples = featurizer.hop_length, x.shape[1]
    frames = samples // hop + 1  # a centred STFT's frame count
    normalize, pad_to = featurizer.normalize, featurizer.pad_to
    featurizer.normalize, featurizer.pad_to = None, 0
    try:
        kept = []
        for start in range(0, frames, piece_frames):
            stop = min(frames, start + piece_frames)
            low, high = max(0, start - context_frames), min(frames, stop + context_frames)
            piece = x[:, low * hop: min(samples, high * hop)]
            out, _ = features(piece, torch.full_like(seq_len, piece.shape[1]))
            kept.append(out[:, :, start - low: stop - low])
    finally:
        featurizer.normalize, featurizer.pad_to = normalize, pad_to
    x = torch.cat(kept, dim=2)
    del kept
    seq_len = featurizer.get_seq_len(seq_len)
    if normalize:
        x, _, _ = normalize_batch(x, seq_len, normalize_type=normalize)
    mask = torch.arange(x.size(-1), device=x.device).unsqueeze(0) >= seq_len.unsqueeze(1)
    x = x.masked_fill(mask.unsqueeze(1), featurizer.pad_value)
    if pad_to == "max":
        x = torch.nn.functional.pad(x, (0, featurizer.max_length - x.size(-1)), value=featurizer.pad_value)
    elif pad_to > 0 and x.size(-1) % pad_to:
        x = torch.nn.functional.pad(x, (0, pad_to - x.size(-1) % pad_to), value=featurizer.pad_value)
    return x, seq_len
