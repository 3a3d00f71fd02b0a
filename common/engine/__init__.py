"""The engine: 16 kHz audio in, transcripts out, for one batch at a time.

`transcriber` plans batches and runs either engine (`batched`: preprocessor, encoder and TDT
decoding on tensors; `nemo`: NeMo's own model.transcribe()); `precision` is fp32 or autocast.
May import the model, device and inputs layers.
"""
