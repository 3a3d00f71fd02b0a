#!/usr/bin/env python3
"""The demo recipe's training step in fp32 and under bf16 autocast, side by side in one run.

What is timed: one step of tools/train_demo_model.py, its own functions (training_step: spec
augment, encoder, prediction network, joint, TDT loss; optimizer_step: backward, gradient
clipping, AdamW), on the same batches for both dtypes, alternating which goes first, so that
the machine's drift hits both alike; each dtype's first step is an untimed warm-up, and later
batch shapes' first steps are timed (the median absorbs them). The clips are the recipe's:
its training text in its voices (its template sentences where the open-text sources are not
installed), cut into batches of --batch-frames mel frames as the recipe cuts them, with a
--vocab-size BPE trained here on 4,000 of its texts. The model starts from --init: by default
the shipped demo model, the start of the run in docs/benchmarks/2026-12-03-demo-open-vocabulary.md.

  python bench/train_step_bench.py --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--init", default=str(REPO / "demo" / "parakeet-tdt-demo.nemo"), help="model to start from")
    parser.add_argument("--clips", type=int, default=120, help="clips spoken for the batches")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per dtype")
    parser.add_argument("--batch-frames", type=int, default=7000, help="mel frames per batch (the recipe's default)")
    parser.add_argument("--vocab-size", type=int, default=512, help="BPE pieces (the recipe's default)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from common.device.accelerators import cpu_speed_flags
    from common.model.loading import import_nemo_asr
    from common.model.random_models import TDT_DURATIONS, train_tokenizer
    from tools import train_demo_model as recipe

    torch.set_num_threads(args.threads)
    import_nemo_asr(quiet=True)  # NeMo logs to stdout, where --json prints
    plan = (recipe.plan_clips if recipe.open_corpus.missing_sources() is None else recipe.template_sets)
    planned = plan(4000, 1, 11)["train"]  # 4,000 texts for the tokenizer; one held-out clip per set, unused
    clips = planned[:args.clips]
    recipe.synthesize(clips)
    # The recipe reports on stdout, where --json prints.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        tokenizer = train_tokenizer(Path(tmp) / "tok", args.vocab_size, sentences=[c.text for c in planned])
        # Two identical models (NeMo models do not deepcopy), one per dtype.
        models = {name: recipe.build_model(tokenizer, args.vocab_size, seed=0, init=args.init)
                  for name in ("fp32", "bf16")}
    not_timed = {}
    unsupported = recipe.bf16_lstm_unsupported()
    if unsupported:  # say so and time fp32 alone, rather than fail
        not_timed["bf16"] = unsupported
        del models["bf16"]
    model = models["fp32"]
    feats = recipe.features(model, clips)
    tokens = [model.tokenizer.text_to_ids(c.text) for c in clips]
    batches = recipe.make_batches([f.shape[1] for f in feats], args.batch_frames, random.Random(0))
    optimizers = {name: recipe.make_optimizer(m, 1e-4) for name, m in models.items()}
    times = {name: [] for name in models}
    blank, sigma = model.decoder.blank_idx, model.cfg.loss.tdt_kwargs.sigma
    for step in range(args.steps + 1):
        batch = recipe.collate(feats, tokens, batches[step % len(batches)])
        for name in [n for n in (("fp32", "bf16") if step % 2 else ("bf16", "fp32")) if n in models]:
            m = models[name]
            m.train()
            started = time.perf_counter()
            loss = recipe.training_step(m, batch, TDT_DURATIONS, blank, sigma, bf16=name == "bf16")
            recipe.optimizer_step(m, optimizers[name], loss)
            if step:
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {"what": "one training step (forward, TDT loss, backward, clipping, AdamW), median of alternating steps",
              "steps": args.steps, "batch_frames": args.batch_frames, "threads": args.threads,
              "cpu_flags": cpu_speed_flags(), "seconds": {k: round(v, 3) for k, v in medians.items()},
              "bf16_speedup": round(medians["fp32"] / medians["bf16"], 2) if "bf16" in medians else None,
              "not_timed": not_timed}
    if args.json:
        print(json.dumps(result))
    else:
        bf16 = (f"bf16 autocast {medians['bf16']:.3f} s ({result['bf16_speedup']}x)" if "bf16" in medians
                else f"bf16 not timed: {not_timed['bf16']}")
        print(f"training step, median of {args.steps}: fp32 {medians['fp32']:.3f} s, {bf16}; "
              f"CPU flags {' '.join(result['cpu_flags'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
