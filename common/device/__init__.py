"""The device layer: the only code that touches `torch.npu` / `torch.cuda`.

`accelerators` resolves --device and probes torch_npu, `clocks` reads time with the device
synchronized, `counters` collects what a counting backend reports, `environment` records the
machine and software a result was measured on. Imports only `common.errors`: the bottom layer.
"""
