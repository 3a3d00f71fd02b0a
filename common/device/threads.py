"""How many CPU threads torch uses: --threads, else one per physical core this process may run
on (hyper-threads share a core's matmul units, so a thread per logical CPU only adds
contention), split evenly among the ranks torchrun started on this host."""

from __future__ import annotations

import os
from typing import Optional


def allowed_cpus() -> set:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may use; the CPU count where
    the kernel does not say (/sys topology missing)."""
    cpus = allowed_cpus()
    cores = set()
    for cpu in cpus:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{topology}/physical_package_id") as package, open(f"{topology}/core_id") as core:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:
            return len(cpus) or 1
    return len(cores) or 1


def default_threads(local_ranks: int = 1) -> int:
    return max(1, physical_cores() // max(1, local_ranks))


def use_threads(requested: Optional[int], local_ranks: int = 1) -> int:
    """Set torch's intra-op threads: `requested`, else the default; returns the number."""
    import torch

    threads = requested or default_threads(local_ranks)
    torch.set_num_threads(threads)
    return threads


def cpu_threads_in_use() -> int:
    import torch

    return torch.get_num_threads()

