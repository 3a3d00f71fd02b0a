"""Inputs: what the user points us at, turned into audio we can run.

`sources` expands --audio arguments (files, folders, NeMo manifests) into `AudioInput`s, each
carrying its own error; `audio` decodes one file to 16 kHz mono float32. Imports only
`common.errors`: the bottom layer.
"""
