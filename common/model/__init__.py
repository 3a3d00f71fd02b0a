"""Models: finding, validating and loading a NeMo FastConformer-TDT model.

`loading` resolves --model (a .nemo, an extracted folder, a pretrained name, `demo`,
`random:<size>`) and loads it onto a device; `hub` fetches a hub name's .nemo (Hugging Face
through $HF_ENDPOINT, ModelScope); `fast_load` is the cached, memory-mapped loader;
`nemo_archive` reads and checks .nemo files; `random_models` and `demo_model` are the offline
models. May import `common.errors`, `common.files` and the device layer.
"""
