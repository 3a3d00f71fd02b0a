"""Who this process is under torchrun, which card it takes, and what share of the inputs.

torchrun (`python -m torch.distributed.run`, torch's own launcher) starts one process per card
and sets LOCAL_RANK, RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT. Without them this is
a world of one and nothing here initialises torch.distributed. With them, each rank:
- takes `npu:LOCAL_RANK` / `cuda:LOCAL_RANK` (or the CPU, for tests);
- runs with its share of the host's cores as CPU threads (set by cli.select_device through
  `rank_threads`), so N ranks do not oversubscribe it;
- initialises the process group with the device's backend (hccl, nccl; gloo for the CPU and for
  the test-only emulated npu, which has no hccl) and uses it only to meet at the start and to
  gather small summaries at the end.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional

from ..device.accelerators import set_current_device
from ..device.threads import cpu_threads_in_use, default_threads
from ..errors import SetupError

# How long a rank waits for the others in a collective (the end gather waits for the slowest
# rank's last batch; a balanced shard differs by about one input). $PARAKEET_RANK_TIMEOUT seconds.
DEFAULT_TIMEOUT_SECONDS = 3600.0
THREADS_ENV = "PARAKEET_RANK_THREADS"


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: how often the group was restarted

    @property
    def ranked(self) -> bool:
        """More than one process: shard, stream per rank, merge on rank 0."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.size}"


def _env_int(env, name: str, default: Optional[int]) -> int:
    value = env.get(name)
    if value is None:
        if default is None:
            raise SetupError(f"torchrun: {name} is not set (LOCAL_RANK, RANK and WORLD_SIZE come together)")
        return default
    try:
        return int(value)
    except ValueError:
        raise SetupError(f"torchrun: {name}={value!r} is not an integer") from None


def world_from_env(env=None) -> World:
    """The world torchrun describes in the environment; a world of one without it."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env and "LOCAL_RANK" not in env:
        return World()
    size = _env_int(env, "WORLD_SIZE", 1)
    world = World(rank=_env_int(env, "RANK", None), local_rank=_env_int(env, "LOCAL_RANK", None), size=size,
                  local_size=_env_int(env, "LOCAL_WORLD_SIZE", size),
                  restart=_env_int(env, "TORCHELASTIC_RESTART_COUNT", 0))
    if not (0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size):
        raise SetupError(f"torchrun: RANK={world.rank} LOCAL_RANK={world.local_rank} outside WORLD_SIZE="
                         f"{world.size} / LOCAL_WORLD_SIZE={world.local_size}")
    return world


def rank_device_spec(spec: str, world: World) -> str:
    """--device under torchrun: each rank takes the card of its LOCAL_RANK. `auto`, `npu` and
    `cuda` get the index; a fixed index would put every rank on one card, so it is refused."""
    if not world.ranked:
        return spec
    kind, _, index = spec.partition(":")
    if index:
        raise SetupError(f"--device {spec}: under torchrun every rank takes its own card (npu:LOCAL_RANK); "
                         f"give --device {kind} and choose cards with ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES")
    return spec


def device_for_rank(device: str, world: World) -> str:
    """A resolved device type ("npu:0", "cuda:0", "cpu") moved to this rank's card."""
    kind = device.split(":")[0]
    return kind if kind == "cpu" else f"{kind}:{world.local_rank}"


def rank_threads(world: World, env=None, requested: Optional[int] = None) -> int:
    """CPU threads for one rank: --threads (`requested`), else $PARAKEET_RANK_THREADS, else the
    host's physical cores split evenly among the ranks on this host (at least 1)."""
    env = os.environ if env is None else env
    if requested:
        return requested
    if env.get(THREADS_ENV):
        try:
            threads = int(env[THREADS_ENV])
        except ValueError:
            threads = 0
        if threads < 1:
            raise SetupError(f"{THREADS_ENV}={env[THREADS_ENV]!r}: must be an integer of at least 1")
        return threads
    return default_threads(world.local_size)


def shard_by_duration(indices: list[int], durations: list[float], size: int) -> list[list[int]]:
    """Split `indices` (with their `durations`) into `size` shares of nearly equal audio:
    longest first, each onto the least-loaded rank (ties: the lower rank). Each share keeps
    input order. Deterministic, so every rank computes the same split."""
    loads = [0.0] * size
    shares: list[list[int]] = [[] for _ in range(size)]
    order = sorted(range(len(indices)), key=lambda k: (-durations[k], indices[k]))
    for k in order:
        target = min(range(size), key=lambda r: (loads[r], len(shares[r]), r))
        shares[target].append(indices[k])
        loads[target] += durations[k]
    return [sorted(share) for share in shares]


def backend_for(device: str) -> str:
    """The torch.distributed backend of a device: hccl (registered by torch_npu), nccl, gloo.
    An npu without hccl (the test-only emulated device) coordinates over gloo."""
    import torch.distributed as dist

    kind = device.split(":")[0]
    if kind == "npu":
        return "hccl" if _backend_available("hccl") else "gloo"
    if kind == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def _backend_available(name: str) -> bool:
    import torch.distributed as dist

    try:
        return dist.is_backend_available(name)
    except Exception:
        return name in getattr(dist.Backend, "backend_list", [])


def _attempt_store(world: World, timeout: float):
    """torchrun's store (env://), its keys under this attempt's prefix. After a restart
    (--max-restarts) the store still holds the failed attempt's keys; torch 2.13 no longer
    prefixes them, and gloo then dials the dead workers' ports (connectFullMesh refused)."""
    import torch.distributed as dist

    store, _, _ = next(dist.rendezvous("env://", rank=world.rank, world_size=world.size,
                                       timeout=datetime.timedelta(seconds=timeout)))
    return dist.PrefixStore(f"parakeet/attempt_{world.restart}/", store)


class Coordinator:
    """torch.distributed for meeting points only. A world of one does nothing."""

    def __init__(self, world: World, device: str):
        self.world, self.device = world, device
        self.backend = None
        self.threads = None
        self._held: list = []  # collective buffers, kept until the group is destroyed (see gather)
        if not world.ranked:
            return
        import torch.distributed as dist

        self.threads = cpu_threads_in_use()  # set by cli.select_device (rank_threads)
        self.backend = backend_for(device)
        if not dist.is_available():
            raise SetupError("torchrun: this torch has no torch.distributed")
        timeout = float(os.environ.get("PARAKEET_RANK_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))
        set_current_device(device)  # hccl/nccl object collectives use the current card
        dist.init_process_group(self.backend, store=_attempt_store(world, timeout), rank=world.rank,
                                world_size=world.size, timeout=datetime.timedelta(seconds=timeout))

    def barrier(self) -> None:
        if self.world.ranked:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, summary: Any) -> Optional[list]:
        """Every rank's picklable `summary` on rank 0 (in rank order), None elsewhere; a world of
        one gets its own as a list."""
        if not self.world.ranked:
            return [summary]
        import pickle

        import torch
        import torch.distributed as dist

        device = "cpu" if self.backend == "gloo" else self.device
        payload = torch.frombuffer(bytearray(pickle.dumps(summary)), dtype=torch.uint8)
        length = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
        lengths = [torch.zeros_like(length) for _ in range(self.world.size)]
        dist.all_gather(lengths, length)
        padded = torch.zeros(max(int(n.item()) for n in lengths), dtype=torch.uint8, device=device)
        padded[:payload.numel()] = payload.to(device)
        slots = [torch.zeros_like(padded) for _ in range(self.world.size)]
        dist.all_gather(slots, padded)
        # gloo's worker thread drops its references to these tensors after the collective has
        # returned; if it held the last one, it would need the GIL, which destroy_process_group
        # keeps while joining that thread (a deadlock seen on torch 2.4 and 2.6 with
        # gather_object). Python keeps them until the group is gone.
        self._held.extend([length, *lengths, padded, *slots])
        if not self.world.is_main:
            return None
        return [pickle.loads(slot[:int(n.item())].cpu().numpy().tobytes()) for slot, n in zip(slots, lengths)]

    def close(self) -> None:
        if self.world.ranked:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._held.clear()

    def describe(self) -> dict:
        return {"rank": self.world.rank, "local_rank": self.world.local_rank, "world_size": self.world.size,
                "device": self.device, "backend": self.backend, "threads": self.threads}
