"""Jobs: what a script runs, end to end. `inference` is the transcription pipeline (check
inputs, choose the device, load once, stream results); `smoke` chains checks, accuracy and
perf. May import every layer below; only the scripts and the library API import it.
"""
