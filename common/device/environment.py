"""A record of the machine and software a result was measured on, for results files."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from .accelerators import cpu_name, cpu_speed_flags, device_name


def package_version(name: str):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment(devices: list[str], command_line: str) -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_flags": cpu_speed_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_npu": package_version("torch_npu"),
        "nemo_toolkit": package_version("nemo_toolkit"),
        "numpy": package_version("numpy"),
        "devices": {dev: device_name(dev) for dev in dict.fromkeys(devices)},
        "command": command_line,
    }
