"""The device layer: the only code that touches `torch.npu` / `torch.cuda`.

`accelerators` resolves --device and probes torch_npu, `stacks` knows which CANN / torch_npu /
torch / NeMo combinations fit and how to install them, `clocks` reads time with the device
synchronized, `counters` collects what a counting backend reports, `environment` records the
machine and software a result was measured on. Imports only `common.errors`: the bottom layer.
"""
