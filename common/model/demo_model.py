"""`--model demo`: the small FastConformer-TDT shipped in demo/, trained on synthetic speech.

It has parakeet's class and decoding (EncDecRNNTBPEModel, greedy_batch TDT) but 2.5M
parameters and a ~1,300-word vocabulary, learned from espeak-ng voices only
(tools/train_demo_model.py). It shows real transcripts offline; it is not parakeet.
"""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo"
DEMO_PATH = Path(__file__).resolve().parents[2] / "demo" / "parakeet-tdt-demo.nemo"
DEMO_NOTE = "demo model: 2.5M parameters trained on synthetic espeak-ng speech, not parakeet"
