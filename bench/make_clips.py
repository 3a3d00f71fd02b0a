#!/usr/bin/env python3
"""Speak a fixed set of 16 English clips of 2-20 s with espeak-ng (16 kHz mono WAV) plus a
NeMo manifest with their text: the clip set the benchmarks use.

  python bench/make_clips.py --out bench/clips
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

SENTENCES = [
    "Good morning.",
    "Please call Stella.",
    "The train leaves at seven fifteen tomorrow morning.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Ask her to bring these things with her from the store: six spoons of fresh snow peas and five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "It is certainly very like the old portrait, observed Phoebe, turning away her eyes.",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence near the barn, wondering whether the rain will come before the harvest is done.",
    "Numbers are hard: four hundred and twenty two, nineteen eighty four, and three point one four one five nine.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors. These take the shape of a long round arch, with its path high above, and its two ends apparently beyond the horizon.",
    "Yes.",
    "Could you tell me the way to the nearest railway station, please? I think I am lost.",
    "There is, according to legend, a boiling pot of gold at one end of the rainbow. People look, but no one ever finds it. When a man looks for something beyond his reach, his friends say he is looking for the pot of gold at the end of the rainbow.",
    "Throughout the centuries people have explained the rainbow in various ways.",
    "Some have accepted it as a miracle without physical explanation. To the Hebrews it was a token that there would be no more universal floods. The Greeks used to imagine that it was a sign from the gods to foretell war or heavy rain.",
]


def make_clips(out_dir: str, words_per_minute: int = 150) -> str:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        sys.exit("bench/make_clips.py: needs espeak-ng and sox (apt-get install espeak-ng sox)")
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for number, text in enumerate(SENTENCES):
        path = os.path.join(out_dir, f"clip{number:02d}.wav")
        with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", raw.name, text], check=True)
            # 0.7 s of silence around each sentence, so that even "Yes." lasts 2 s
            subprocess.run(["sox", raw.name, "-r", "16000", "-c", "1", "-b", "16", path, "vol", "0.9", "pad", "0.7", "0.7"],
                           check=True)
        duration = float(subprocess.run(["soxi", "-D", path], capture_output=True, text=True, check=True).stdout)
        entries.append({"audio_filepath": os.path.basename(path), "duration": round(duration, 3), "text": text})
    manifest = os.path.join(out_dir, "manifest.jsonl")
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in entries)
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="bench/clips", help="output folder")
    args = parser.parse_args(argv)
    manifest = make_clips(args.out)
    with open(manifest, encoding="utf-8") as handle:
        durations = [json.loads(line)["duration"] for line in handle]
    print(f"{manifest}: {len(durations)} clips, {min(durations):.1f}-{max(durations):.1f} s, {sum(durations):.1f} s total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
