"""Measurements: device-vs-reference accuracy (`accuracy`, with `compare` for WER, CER and
timestamp drift) and latency/RTFx benchmarks (`perf`). May import the engine and everything
below it.
"""
