"""Outputs: transcription results as documents (`documents`) rendered as text, JSON, SRT or
WebVTT (`formats`). May import the engine and everything below it.
"""
