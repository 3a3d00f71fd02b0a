"""Inputs: what the user points us at, turned into audio we can run.

`sources` expands --audio arguments (files, folders, NeMo manifests, and through `layouts` the
LibriSpeech, Kaldi/WeNet and Hugging Face `datasets` layouts) into `AudioInput`s (`items`), each
carrying its own error; `audio` decodes one file, or embedded bytes, to 16 kHz mono float32. Imports only
`common.errors`: the bottom layer.
"""
