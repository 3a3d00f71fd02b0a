"""Fast model loading: what NeMo's restore_from() does, without its three costs.

restore_from() untars the whole .nemo into a temp folder on every call, builds the model with
random initialisation of every parameter, then copies the checkpoint's weights over them. Here:
the .nemo is extracted once into a cache (keyed by path, size and mtime), parameter
initialisation is skipped in the building thread only (the checkpoint overwrites every
parameter), and the weights are memory-mapped and assigned to the model without a copy. Same parameters, same outputs as
restore_from() (tested).

The cache is shared by every process of every user of the cache folder: one lock file per
cached version (filelock) guards its extraction and every read of it, so any number of
processes can extract and load the same model at once, and the extraction of a newer version
removes an older one only while nobody holds the older one's lock.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Iterator

from .nemo_archive import CONFIG_NAME, WEIGHTS_NAME

LOCKS_FOLDER = ".locks"
# NeMo's AppState (where "nemo:" artifact paths resolve) is one per process: one build at a time.
_RESTORE_STATE_LOCK = threading.Lock()


def extraction_cache_root() -> Path:
    from .random_models import default_cache_dir

    return default_cache_dir() / "extracted"


def _cache_key(nemo_path: Path, stat: os.stat_result | None = None) -> tuple[str, str]:
    """(prefix shared by every version of this path, full key of this version)."""
    stat = stat or nemo_path.stat()
    path_hash = hashlib.sha1(str(nemo_path.resolve()).encode()).hexdigest()[:10]
    prefix = f"{nemo_path.stem}-{path_hash}-"
    return prefix, f"{prefix}{stat.st_size}-{stat.st_mtime_ns}"


def _version_lock(root: Path, key: str, timeout: float = -1):
    """The inter-process lock of one cached version. Lock files live apart from the versions
    so that globbing for versions never meets them."""
    from filelock import FileLock

    (root / LOCKS_FOLDER).mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / LOCKS_FOLDER / f"{key}.lock"), timeout=timeout)


@contextlib.contextmanager
def extraction(nemo_path: str | os.PathLike, cache_root: Path | None = None) -> Iterator[tuple[Path, bool]]:
    """Yield (folder, reused): the cached extraction of `nemo_path`, extracted first if needed,
    with its lock held so that no other process removes it while the caller reads it. Older
    extractions of the same path are removed afterwards when nobody holds them."""
    nemo_path = Path(nemo_path)
    root = cache_root or extraction_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    # Key and content come from one open file: a .nemo replaced meanwhile cannot mix them up.
    with open(nemo_path, "rb") as archive_file:
        prefix, key = _cache_key(nemo_path, os.fstat(archive_file.fileno()))
        folder = root / key
        with _version_lock(root, key):
            reused = (folder / CONFIG_NAME).is_file()
            if not reused:
                _extract(archive_file, root, key)
            yield folder, reused
    _remove_unused_versions(root, prefix, keep=key)


def _extract(archive_file, root: Path, key: str) -> None:
    """Extract into a private folder, then rename it into place. Called with the version's lock
    held, so any leftover of `key` (a crashed extraction) is nobody's and can go."""
    for leftover in root.glob(f".{key}.partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.rmtree(root / key, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.partial-"))
    try:
        with tarfile.open(fileobj=archive_file, mode="r:*") as archive:
            extract_safely(archive, partial)
        os.rename(partial, root / key)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def extract_safely(archive: tarfile.TarFile, folder: Path) -> None:
    """Extract regular files and folders only, each inside `folder`: tarfile's "data" filter
    (PEP 706) where this Python has it (3.11.4+, 3.12), the same refusals by hand on older patch
    releases (Debian bookworm's 3.11.2, where extractall() has no `filter`)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(folder, filter="data")
        return
    inside = os.path.realpath(folder)
    for member in archive.getmembers():
        target = os.path.realpath(os.path.join(inside, member.name))
        if not (member.isfile() or member.isdir()) or os.path.isabs(member.name) \
                or os.path.commonpath([inside, target]) != inside:
            raise tarfile.TarError(f"refusing to extract {member.name!r}: not a file or folder inside the archive's root")
    archive.extractall(folder)


def _remove_unused_versions(root: Path, prefix: str, keep: str) -> None:
    """Remove the other cached versions of the same .nemo path, each only if its lock is free
    right now: one being read by another process stays until a later call."""
    from filelock import Timeout

    for other in root.glob(prefix + "*"):
        if other.name == keep:
            continue
        try:
            with _version_lock(root, other.name, timeout=0):
                shutil.rmtree(other, ignore_errors=True)
        except Timeout:
            pass


def extracted_folder(nemo_path: str | os.PathLike, cache_root: Path | None = None) -> tuple[Path, bool]:
    """The cached extraction of `nemo_path` (folder, reused). The lock is released on return:
    to read the folder safely while other versions may be extracted, use `extraction()`."""
    with extraction(nemo_path, cache_root) as found:
        return found


@functools.lru_cache(maxsize=1)
def _skip_init_mode_class():
    """A TorchFunctionMode that turns parameter initialisation into no-ops in the thread that
    enters it, and nowhere else: no module attribute is patched.

    - torch.nn.init.uniform_/normal_/constant_/kaiming_uniform_ dispatch to the mode themselves
      (has_torch_function_variadic); they return their tensor untouched. These cover Linear,
      Conv, LSTM, Embedding and NeMo's own initialisers.
    - The other torch.nn.init functions (xavier_*, kaiming_normal_, trunc_normal_, sparse_,
      orthogonal_) do not dispatch, but call Tensor.uniform_/normal_ on the parameter, or on a
      scratch tensor made from it with new_empty or new (orthogonal_, whose QR is the slow part on big
      matrices). Those calls are skipped only for such disposable tensors: a parameter, or a
      tensor made from one by new_empty; QR of a disposable tensor returns empty factors.
      Random draws on any other tensor (buffers, scratch of a rejection loop) stay real.
    Skipped parameters hold uninitialised memory until the checkpoint is assigned over them."""
    import torch
    from torch.overrides import TorchFunctionMode

    init = torch.nn.init
    skipped_initialisers = {init.uniform_, init.normal_, init.constant_, init.kaiming_uniform_}
    random_fills = {torch.Tensor.uniform_, torch.Tensor.normal_}
    # orthogonal_'s scratch: new_empty (torch 2.6 on), Tensor.new (torch 2.4)
    scratch_makers = {torch.Tensor.new_empty, torch.Tensor.new}

    class SkipInitMode(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self._disposable: dict[int, weakref.ref] = {}  # id -> tensor made from a parameter

        def _is_disposable(self, tensor) -> bool:
            if isinstance(tensor, torch.nn.Parameter):
                return True
            ref = self._disposable.get(id(tensor))
            return ref is not None and ref() is tensor

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in skipped_initialisers:
                return args[0] if args else kwargs["tensor"]
            if func in random_fills and self._is_disposable(args[0]):
                return args[0]
            if func is torch.linalg.qr and args and self._is_disposable(args[0]):
                return _empty_qr(args[0])
            result = func(*args, **kwargs)
            if func in scratch_makers and self._is_disposable(args[0]):
                self._disposable[id(result)] = weakref.ref(result)
            return result

    def _empty_qr(matrix):
        *batch, rows, cols = matrix.shape
        k = min(rows, cols)
        return torch.return_types.linalg_qr((matrix.new_empty((*batch, rows, k)),
                                             matrix.new_empty((*batch, k, cols))))

    return SkipInitMode


@contextlib.contextmanager
def skip_parameter_init():
    """Skip random parameter initialisation in this thread while a model is built (see
    _skip_init_mode_class). Other threads, and this one afterwards, are unaffected."""
    with _skip_init_mode_class()():
        yield


@contextlib.contextmanager
def _nemo_restoring_from(folder: Path):
    """Tell NeMo a model is being restored from `folder`, so that "nemo:" artifact paths (the
    tokenizer) resolve against it; the previous state comes back afterwards. Public AppState
    properties, the same two that NeMo's private ModelPT._set_model_restore_state sets."""
    from nemo.utils import AppState

    state = AppState()
    with _RESTORE_STATE_LOCK:
        saved = state.is_model_being_restored, state.nemo_file_folder
        state.is_model_being_restored, state.nemo_file_folder = True, str(folder)
        try:
            yield
        finally:
            state.is_model_being_restored, state.nemo_file_folder = saved


def load_extracted(folder: str | os.PathLike):
    """Build the model from an extracted .nemo folder and assign its memory-mapped weights."""
    import torch
    from nemo.utils.model_utils import import_class_by_path
    from omegaconf import OmegaConf

    folder = Path(folder)
    config = OmegaConf.load(folder / CONFIG_NAME)
    if "model" in config:
        config = config.model
    OmegaConf.set_struct(config, True)
    model_class = import_class_by_path(config.target)
    with _nemo_restoring_from(folder), skip_parameter_init():
        model = model_class.from_config_dict(config=config)
    state_dict = torch.load(folder / WEIGHTS_NAME, map_location="cpu", mmap=True, weights_only=True)
    result = model.load_state_dict(state_dict, strict=True, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"state dict mismatch: missing {result.missing_keys[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]}")
    return model.eval()


def fast_restore(nemo_path: str | os.PathLike):
    """The model of a .nemo file via the extraction cache; returns (model, cache_was_reused).
    The extraction stays locked while the model is built from it (other processes loading the
    same version wait that long); the memory-mapped weights outlive a later removal."""
    with extraction(nemo_path) as (folder, reused):
        return load_extracted(folder), reused
