"""Model loading: a .nemo file, an extracted .nemo folder (or a folder holding one .nemo), a
hub name (`org/name` through $HF_ENDPOINT, `modelscope:org/name`: common/model/hub.py), a name
in NeMo's own catalogue, `demo` or `random:<size>`.

Models are restored on the CPU, put in eval mode, then moved to the device; the decoding
strategy is set explicitly (NeMo keeps whatever the last call left behind otherwise). A hub
name is downloaded (or found in the cache) before NeMo is imported, then loaded as its .nemo.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Optional

from ..errors import SetupError
from . import hub, random_models
from .demo_model import DEMO_NAME, DEMO_NOTE, DEMO_PATH
from .nemo_archive import CONFIG_NAME, ModelError, check_extracted_dir, check_nemo_archive

PRETRAINED_NAME = "nvidia/parakeet-tdt-0.6b-v2"
DEFAULT_MODEL_FILE = "parakeet-tdt-0.6b-v2.nemo"
MODEL_ENV_VAR = "PARAKEET_MODEL"


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the user gave
    kind: str  # "nemo_file" | "extracted_dir" | "pretrained" | "random"
    path: Optional[str] = None  # for "pretrained", the downloaded .nemo once fetched (see `fetched`)
    note: Optional[str] = None  # shown wherever results are shown


@dataclass
class LoadedModel:
    model: object  # a NeMo ASRModel
    source: ModelSource
    device: str
    load_seconds: float
    to_device_seconds: float
    timestamps: bool = False
    info: dict = field(default_factory=dict)
    decoder_device: Optional[str] = None  # where the TDT decoder and joint run, if not on `device`
    encoders: dict = field(default_factory=dict)  # dtype -> (attention, encoder copy): common/engine/encoders.py


def default_model_spec() -> str:
    """$PARAKEET_MODEL, else ./parakeet-tdt-0.6b-v2.nemo if present, else the pretrained name."""
    if os.environ.get(MODEL_ENV_VAR):
        return os.environ[MODEL_ENV_VAR]
    if os.path.isfile(DEFAULT_MODEL_FILE):
        return f"./{DEFAULT_MODEL_FILE}"
    return PRETRAINED_NAME


def _looks_like_path(spec: str) -> bool:
    """Pretrained names look like 'nvidia/parakeet-tdt-0.6b-v2', 'modelscope:org/name' or
    'stt_en_fastconformer_...' (NeMo's catalogue)."""
    return spec.startswith((".", "/", "~")) or spec.endswith(".nemo") or spec.count("/") > 1


def resolve_model_source(spec: str) -> ModelSource:
    """Classify and validate --model without loading any weights."""
    if spec == DEMO_NAME:
        if not DEMO_PATH.is_file():
            raise ModelError(f"--model demo: {DEMO_PATH} is missing; restore it from the repository "
                             f"or rebuild it with python tools/train_demo_model.py")
        check_nemo_archive(str(DEMO_PATH))
        return ModelSource(spec, "nemo_file", str(DEMO_PATH), note=DEMO_NOTE)
    if spec.startswith(random_models.RANDOM_PREFIX):
        if spec not in random_models.random_model_names():
            raise ModelError(f"--model {spec}: unknown; choose one of {', '.join(random_models.random_model_names())}")
        return ModelSource(spec, "random", note=random_models.RANDOM_WEIGHTS_NOTE)
    if spec.startswith(hub.MODELSCOPE_PREFIX):
        hub.repo_of(spec)  # raises unless ORG/NAME follows the prefix
        return ModelSource(spec, "pretrained")
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        return _folder_source(spec, path)
    if os.path.isfile(path):
        check_nemo_archive(path)
        return ModelSource(spec, "nemo_file", path)
    if _looks_like_path(spec):
        raise ModelError(f"--model {spec}: no such file or folder")
    return ModelSource(spec, "pretrained")


def _folder_source(spec: str, path: str) -> ModelSource:
    """An extracted .nemo, or a folder holding one .nemo (a hub repository copied by hand)."""
    nemos = sorted(str(p) for p in Path(path).glob(f"*{hub.NEMO_SUFFIX}") if p.is_file())
    if len(nemos) == 1 and not os.path.isfile(os.path.join(path, CONFIG_NAME)):
        check_nemo_archive(nemos[0])
        return ModelSource(spec, "nemo_file", nemos[0])
    if len(nemos) > 1:
        raise ModelError(f"--model {spec}: the folder holds several .nemo files "
                         f"({', '.join(os.path.basename(n) for n in nemos)}): pass one of them")
    check_extracted_dir(path)
    return ModelSource(spec, "extracted_dir", path)


def fetched(source: ModelSource, progress: Optional[bool] = None) -> ModelSource:
    """`source` with its .nemo on this machine: a hub name is downloaded into its hub's cache (or
    found there) and checked like a local .nemo; anything else is returned as it is."""
    if source.kind != "pretrained" or source.path or hub.hub_of(source.spec) is None:
        return source
    local = hub.fetch_nemo(source.spec, progress)
    check_nemo_archive(local.path)
    return replace(source, path=local.path, note=", ".join(filter(None, [source.note, f"from {local.origin}"])))


class SourceCheck(NamedTuple):
    """The dry-run's look at --model (check_model_source)."""

    ok: bool
    message: str  # which source will be used: local file, cache, hub at which endpoint, ModelScope
    size: Optional[int] = None  # bytes of the model file, where known


def check_model_source(spec: str) -> SourceCheck:
    """Where --model `spec` will come from, whether that works now, the file's size and, for a
    download, whether the cache's disk has room: cheap (a model-info request and a HEAD for a
    hub name), nothing downloaded or loaded."""
    try:
        source = resolve_model_source(spec)
        if source.kind == "random":
            cached = random_models.random_model_path(spec)
            return SourceCheck(True, f"{spec}: built locally ({'cached' if cached.is_file() else 'on first use'})",
                               cached.stat().st_size if cached.is_file() else None)
        if source.kind == "pretrained" and hub.hub_of(spec) is None:
            return SourceCheck(True, f"{spec}: NeMo's own catalogue (NGC), fetched by NeMo's from_pretrained")
        if source.kind == "pretrained":
            return SourceCheck(*hub.describe_hub_source(spec))
    except SetupError as error:
        return SourceCheck(False, str(error).replace(f"--model {spec}: ", ""))
    size = (sum(f.stat().st_size for f in Path(source.path).rglob("*") if f.is_file())
            if source.kind == "extracted_dir" else os.path.getsize(source.path))
    what = "extracted .nemo folder" if source.kind == "extracted_dir" else "local file"
    return SourceCheck(True, f"{what} {source.path} ({hub.gib(size)})", size)


def import_nemo_asr(quiet: bool = True):
    """Import NeMo's ASR collection; with `quiet`, keep its INFO chatter and warnings out of the way."""
    # NeMo logs INFO to stdout, which would corrupt --json output.
    os.environ.setdefault("NEMO_REDIRECT_LOGS_TO_STDERR", "1")
    if quiet:
        logging.getLogger("nv_one_logger").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")
    try:
        import nemo.collections.asr as nemo_asr
        from nemo.utils import logging as nemo_logging
    except ImportError as error:
        raise SetupError(f"NeMo is not importable ({error}): pip install -r requirements.txt") from None
    if quiet:
        nemo_logging.setLevel(logging.ERROR)
    return nemo_asr


def restore_on_cpu(source: ModelSource, quiet: bool = True, loader: str = "fast") -> tuple[object, str]:
    """The NeMo model for `source`, on the CPU, in eval mode, and how it was loaded.

    loader "fast" uses the extraction cache and memory-mapped weights (common/model/fast_load.py) for
    .nemo files (a hub name's downloaded one included), extracted folders and random:<size>;
    "nemo" is NeMo's own restore_from()."""
    source = fetched(source)
    nemo_asr = import_nemo_asr(quiet)
    ASRModel = nemo_asr.models.ASRModel
    path = str(random_models.cached_random_model(source.spec)) if source.kind == "random" else source.path
    try:
        if path is None:  # a name in NeMo's own catalogue
            return _from_pretrained(ASRModel, source.spec).eval(), "nemo from_pretrained"
        if loader == "fast":
            try:
                return _fast_restore(source, path)
            except Exception as error:  # e.g. another NeMo version's internals: NeMo's own path still works
                fallback = f"nemo restore_from (fast loader failed: {type(error).__name__}: {str(error)[:120]})"
                return _nemo_restore(ASRModel, source, path)[0], fallback
        return _nemo_restore(ASRModel, source, path)
    except SetupError:
        raise
    except Exception as error:
        raise ModelError(f"--model {source.spec}: cannot be restored ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:300] if str(error) else ''})") from error


def _fast_restore(source: ModelSource, path: str) -> tuple[object, str]:
    from . import fast_load

    if source.kind == "extracted_dir":
        return fast_load.load_extracted(path), "fast (extracted folder)"
    model, reused = fast_load.fast_restore(path)
    return model, "fast (extraction cache reused)" if reused else "fast (extracted to cache)"


def _nemo_restore(ASRModel, source: ModelSource, path: str) -> tuple[object, str]:
    if source.kind == "extracted_dir":
        from nemo.core.connectors.save_restore_connector import SaveRestoreConnector

        connector = SaveRestoreConnector()
        connector.model_extracted_dir = path
        return ASRModel.restore_from(path, map_location="cpu", save_restore_connector=connector).eval(), \
            "nemo restore_from (extracted folder)"
    return ASRModel.restore_from(path, map_location="cpu").eval(), "nemo restore_from"


def _from_pretrained(ASRModel, name: str):
    """A name in NeMo's own catalogue (NGC), fetched by NeMo; hub names never come here."""
    try:
        return ASRModel.from_pretrained(name, map_location="cpu")
    except Exception as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ModelError(f"--model {name}: cannot fetch the model from NeMo's catalogue ({reason}); use a hub "
                         "name ORG/NAME (through HF_ENDPOINT) or modelscope:ORG/NAME, or download the .nemo "
                         "elsewhere and pass --model PATH") from error


def configure_decoding(model, device: str, timestamps: bool) -> None:
    """Greedy-batch decoding; CUDA-graph decoder only on CUDA; timestamps explicitly on or off."""
    from omegaconf import open_dict

    decoding_cfg = copy.deepcopy(model.cfg.decoding)
    with open_dict(decoding_cfg):
        decoding_cfg.strategy = "greedy_batch"
        if "greedy" not in decoding_cfg or decoding_cfg.greedy is None:
            decoding_cfg.greedy = {}
        decoding_cfg.greedy.use_cuda_graph_decoder = device.startswith("cuda")
        decoding_cfg.compute_timestamps = bool(timestamps)
    model.change_decoding_strategy(decoding_cfg, verbose=False)


def model_info(model) -> dict:
    cfg = model.cfg
    return {
        "class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "model_type": str(cfg.decoding.get("model_type", "rnnt")) if "decoding" in cfg else None,
        "sample_rate": int(cfg.get("sample_rate", 16000)),
    }


def independent_of_other_ranks(model) -> None:
    """NeMo's Conformer encoder all-reduces each batch's length over torch.distributed when a
    process group exists (`sync_max_audio_length`, meant for training with DDP). Under torchrun
    the ranks run different batches, so that hidden collective would hang them: inference never
    needs it, so it is off."""
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "sync_max_audio_length"):
        encoder.sync_max_audio_length = False


def load_model(spec: str, device: str, timestamps: bool = False, quiet: bool = True,
               source: Optional[ModelSource] = None, loader: str = "fast",
               decoder_device: Optional[str] = None, progress: Optional[bool] = None) -> LoadedModel:
    """Fetch a hub name's .nemo (download progress when `progress`; None: when stderr is a
    terminal), restore it on the CPU, move it to `device` (the decoder and joint to
    `decoder_device` when given), set up decoding."""
    source = fetched(source or resolve_model_source(spec), progress)  # before NeMo: a failed fetch fails fast
    import_nemo_asr(quiet)  # imported before the clock starts: load time is the model's alone
    start = time.perf_counter()
    model, how = restore_on_cpu(source, quiet, loader)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model = model.to(device)
    if decoder_device and decoder_device != device:
        model.decoder.to(decoder_device)
        model.joint.to(decoder_device)
    to_device_seconds = time.perf_counter() - start
    configure_decoding(model, decoder_device or device, timestamps)
    independent_of_other_ranks(model)
    info = {**model_info(model), "loader": how}
    if decoder_device and decoder_device != device:
        info["decoder_device"] = decoder_device
    return LoadedModel(model, source, device, load_seconds, to_device_seconds, timestamps, info,
                       decoder_device if decoder_device != device else None)


def describe(source: ModelSource) -> str:
    return source.spec + (f" ({source.note})" if source.note else "")


def model_identity(source: ModelSource) -> str:
    """The model as results depend on it: its spec, and for a file its resolved path, size and
    mtime (a re-exported .nemo under the same name is another model)."""
    if source.path is None or not os.path.exists(source.path):
        return source.spec
    stat = os.stat(source.path)
    return f"{source.spec} ({os.path.realpath(source.path)}, {stat.st_size} bytes, mtime {stat.st_mtime_ns})"


class ModelPool:
    """Loads each (model, device) once per process and hands out the same LoadedModel after."""

    def __init__(self, timestamps: bool = False, quiet: bool = True, loader: str = "fast",
                 decoder_device: Optional[str] = None):
        self.timestamps = timestamps
        self.quiet = quiet
        self.loader = loader
        self.decoder_device = decoder_device
        self.loads: list[tuple[str, str]] = []  # (spec, device), in load order
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def get(self, source: ModelSource, device: str) -> LoadedModel:
        key = (source.spec, device)
        if key not in self._loaded:
            self._loaded[key] = load_model(source.spec, device, self.timestamps, self.quiet, source, self.loader,
                                           self.decoder_device)
            self.loads.append(key)
        return self._loaded[key]
