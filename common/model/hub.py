"""Models fetched by name: `org/name` from the Hugging Face hub or the mirror `$HF_ENDPOINT`
names, `modelscope:org/name` from ModelScope. Each name stands for the one .nemo file of its
repository; the toolkit loads that file with its own loader, like any local .nemo.

Hugging Face: the client is huggingface_hub's, and so are the settings (`HF_ENDPOINT`,
`HF_HOME`/`HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_TOKEN`) and the cache layout (`blobs/<etag>`,
`snapshots/<commit>/<file>`, `refs/main`), so `hf_hub_download` and `hf cache` see the same
files. The download loop is ours, on huggingface_hub's `http_get`, because hf_hub_download
throws a cut download away from huggingface_hub 1.0 on (0.x resumed it): here the partial file
`blobs/<etag>.incomplete` outlives a cut connection or a killed run and the next run resumes it
with a Range request. The finished file is checked for its size and, where the hub gives one,
its sha256 (LFS files) before it is renamed to `blobs/<etag>`, and only then does the snapshot
point at it: a half or wrong file is never used. A wrong one is deleted.

ModelScope: the `modelscope` package's own download (it resumes and checks sha256 itself),
imported only for a `modelscope:` name; it is optional (requirements-hub.txt).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..files import write_text_atomic
from .nemo_archive import ModelError

HUGGINGFACE, MODELSCOPE = "huggingface", "modelscope"
MODELSCOPE_PREFIX = "modelscope:"
NEMO_SUFFIX = ".nemo"
DEFAULT_BRANCH = "main"  # the ref huggingface_hub caches a default-branch download under
INCOMPLETE_SUFFIX = ".incomplete"  # huggingface_hub's name for a partial blob
REPO_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
SHA256 = re.compile(r"[0-9a-f]{64}")
HASH_CHUNK = 1 << 24
HUB_REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-hub.txt"


def hub_of(spec: str) -> Optional[str]:
    """HUGGINGFACE for 'org/name', MODELSCOPE for 'modelscope:org/name', None for anything else."""
    if spec.startswith(MODELSCOPE_PREFIX):
        return MODELSCOPE
    return HUGGINGFACE if REPO_NAME.fullmatch(spec) else None


def repo_of(spec: str) -> str:
    """'modelscope:org/name' -> 'org/name'; checked."""
    repo = spec[len(MODELSCOPE_PREFIX):] if spec.startswith(MODELSCOPE_PREFIX) else spec
    if not REPO_NAME.fullmatch(repo):
        raise ModelError(f"--model {spec}: not a repository name (expected ORG/NAME)")
    return repo


@dataclass(frozen=True)
class RemoteNemo:
    """The .nemo of a repository as the hub describes it (no byte of it downloaded)."""

    repo: str
    filename: str
    commit: str
    url: str  # where to GET it (the resolve URL, or where it redirects)
    etag: str  # names the blob in the cache
    size: Optional[int]
    sha256: Optional[str]  # the LFS hash, where the hub gives one


@dataclass(frozen=True)
class Fetched:
    path: str  # the local .nemo
    origin: str  # where it came from, for the user


class Unreachable(Exception):
    """The endpoint did not answer (connection refused, timeout, HTTP 5xx): the cache may do."""


# ------------------------------------------------------------------ Hugging Face


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as it is set now."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return now or bool(constants.HF_HUB_OFFLINE)


def unreachable_message(spec: str, endpoint: str, reason: str) -> str:
    return (f"--model {spec}: cannot reach the Hugging Face hub at {endpoint} ({reason}); set HF_ENDPOINT "
            f"to a mirror this host can reach, use --model {MODELSCOPE_PREFIX}{repo_of(spec)}, or pass a "
            "local .nemo (--model PATH)")


def storage_folder(repo: str, cache_dir: Path) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir / repo_folder_name(repo_id=repo, repo_type="model")


def cached_nemo(repo: str, cache_dir: Path) -> Optional[Path]:
    """The finished .nemo of the default branch's last fetched commit, if the cache holds it."""
    storage = storage_folder(repo, cache_dir)
    ref = storage / "refs" / DEFAULT_BRANCH
    if not ref.is_file():
        return None
    snapshot = storage / "snapshots" / ref.read_text(encoding="utf-8").strip()
    found = sorted(p for p in snapshot.rglob(f"*{NEMO_SUFFIX}") if p.is_file()) if snapshot.is_dir() else []
    return found[0] if len(found) == 1 else None


def remote_nemo(spec: str, endpoint: str, timeout: Optional[float] = None) -> RemoteNemo:
    """The repository's .nemo, from the hub's model info and a HEAD of its resolve URL."""
    from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url

    repo = repo_of(spec)
    timeout = timeout or constants.HF_HUB_ETAG_TIMEOUT
    info = _asking(spec, endpoint, lambda: HfApi(endpoint=endpoint).model_info(repo, files_metadata=True,
                                                                                timeout=timeout))
    siblings = {s.rfilename: s for s in info.siblings or []}
    filename = choose_nemo(spec, list(siblings), f"{endpoint}/{repo}")
    commit = info.sha or DEFAULT_BRANCH
    url = hf_hub_url(repo, filename, revision=commit, endpoint=endpoint)
    meta = _asking(spec, endpoint, lambda: get_hf_file_metadata(url, timeout=timeout))
    sibling = siblings[filename]
    lfs = sibling.lfs
    size = meta.size if meta.size is not None else (lfs.size if lfs else sibling.size)
    if lfs and size is not None and lfs.size != size:
        raise ModelError(f"--model {spec}: {endpoint} gives two sizes for {filename} ({lfs.size} in the model "
                         f"info, {size} in its headers): the mirror is inconsistent")
    etag = meta.etag or (lfs.sha256 if lfs else None)
    if not etag:
        raise ModelError(f"--model {spec}: {endpoint} gives no ETag for {filename}: not a Hugging Face hub "
                         "endpoint? check HF_ENDPOINT")
    sha256 = lfs.sha256 if lfs else (etag if SHA256.fullmatch(etag) else None)
    return RemoteNemo(repo, filename, meta.commit_hash or commit, meta.location or url, etag, size, sha256)


def choose_nemo(spec: str, files: list[str], where: str) -> str:
    """The one .nemo among a repository's files (the one named after the repository if several)."""
    nemos = [f for f in files if f.endswith(NEMO_SUFFIX)]
    named = [f for f in nemos if os.path.basename(f) == repo_of(spec).split("/")[1] + NEMO_SUFFIX]
    if len(nemos) == 1 or len(named) == 1:
        return (named or nemos)[0]
    if not nemos:
        raise ModelError(f"--model {spec}: {where} holds no {NEMO_SUFFIX} file (it has: "
                         f"{', '.join(files[:8]) or 'nothing'}): this toolkit loads NeMo .nemo models")
    raise ModelError(f"--model {spec}: {where} holds several {NEMO_SUFFIX} files ({', '.join(nemos)}): "
                     "download the one you want and pass --model PATH")


def _asking(spec: str, endpoint: str, call):
    """`call`'s answer; a missing repository or denied access as a ModelError, anything that
    says the endpoint cannot be used now as Unreachable."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        return call()
    except OfflineModeIsEnabled as error:
        raise Unreachable("HF_HUB_OFFLINE is set") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise ModelError(f"--model {spec}: {endpoint} refuses access (HTTP {status}): a gated or private "
                             "model needs HF_TOKEN") from None
        if status == 404:
            raise ModelError(f"--model {spec}: no such model at {endpoint} (HTTP 404)") from None
        raise Unreachable(f"HTTP {status}") from error
    except ModelError:
        raise
    except Exception as error:  # the transport's own errors: requests' (0.x) or httpx's (1.x+)
        raise Unreachable(_first_line(error)) from error


def fetch_huggingface(spec: str, endpoint: Optional[str] = None, cache_dir: Optional[os.PathLike] = None,
                      progress: Optional[bool] = None) -> Fetched:
    """The local path of the repository's .nemo: the cached one if it is the hub's current file
    (or the hub cannot be asked: offline, unreachable), else downloaded into the cache."""
    endpoint = (endpoint or hf_endpoint()).rstrip("/")
    cache_dir = Path(cache_dir) if cache_dir else hf_cache_dir()
    repo = repo_of(spec)
    if hf_offline():
        cached = cached_nemo(repo, cache_dir)
        if cached is None:
            raise ModelError(f"--model {spec}: HF_HUB_OFFLINE is set and the Hugging Face hub cache {cache_dir} "
                             f"holds no .nemo of {repo}: fetch it once with network access, or pass a local .nemo "
                             "(--model PATH)")
        return Fetched(str(cached), "cached copy (HF_HUB_OFFLINE)")
    try:
        remote = remote_nemo(spec, endpoint)
    except Unreachable as error:
        cached = cached_nemo(repo, cache_dir)
        if cached is None:
            raise ModelError(unreachable_message(spec, endpoint, str(error))) from None
        print(f"warning: --model {spec}: {endpoint} unreachable ({error}); using the cached {cached}",
              file=sys.stderr, flush=True)
        return Fetched(str(cached), f"cached copy: {endpoint} unreachable ({error})")
    return Fetched(str(download(spec, remote, cache_dir, progress)), f"{endpoint}, revision {remote.commit[:12]}")


def download(spec: str, remote: RemoteNemo, cache_dir: Path, progress: Optional[bool] = None) -> Path:
    """The snapshot path of `remote` in the cache, downloaded first unless its blob is there.
    One process downloads a blob at a time (huggingface_hub's own lock file for it)."""
    from filelock import FileLock

    storage = storage_folder(remote.repo, cache_dir)
    blob = storage / "blobs" / remote.etag
    pointer = storage / "snapshots" / remote.commit / remote.filename
    lock = cache_dir / ".locks" / storage.name / f"{remote.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if not _complete(blob, remote):
            _download_blob(spec, remote, blob, sys.stderr.isatty() if progress is None else progress)
        if not pointer.is_file():
            _link(blob, pointer)
        write_text_atomic(storage / "refs" / DEFAULT_BRANCH, remote.commit)
    return pointer


def _complete(blob: Path, remote: RemoteNemo) -> bool:
    """A blob is only ever renamed into place after its checks: its size tells it is this file."""
    return blob.is_file() and (remote.size is None or blob.stat().st_size == remote.size)


def _download_blob(spec: str, remote: RemoteNemo, blob: Path, progress: bool) -> None:
    """GET into `<blob>.incomplete` from where an earlier try stopped; check; rename into place."""
    partial = blob.with_name(blob.name + INCOMPLETE_SUFFIX)
    blob.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists() and remote.size is not None and partial.stat().st_size > remote.size:
        partial.unlink()  # longer than the file: not a prefix of it
    with open(partial, "ab") as handle:
        resume_from = handle.tell()
        if remote.size is not None:
            _check_room(spec, blob.parent, remote.size - resume_from)
        if resume_from != remote.size:  # equal: an earlier run stopped between the last byte and the checks
            _get(spec, remote, handle, resume_from, progress)
    _check_download(spec, remote, partial)
    os.replace(partial, blob)


def _get(spec: str, remote: RemoteNemo, handle, resume_from: int, progress: bool) -> None:
    """Append the file's bytes from `resume_from` on (a Range request when not 0). No
    expected_size for http_get: a complete answer of the wrong size is judged by
    _check_download, which deletes it; a cut keeps what came, for the next run."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    try:
        with _progress_bars(progress):
            http_get(remote.url, handle, resume_size=resume_from, headers=build_hf_headers(),
                     displayed_filename=remote.filename)
    except Exception as error:
        handle.flush()
        raise ModelError(f"--model {spec}: download of {remote.filename} stopped at {handle.tell()} of "
                         f"{remote.size or '?'} bytes ({_first_line(error)}); run again to resume") from None


def _check_download(spec: str, remote: RemoteNemo, partial: Path) -> None:
    """Size, then sha256 where known; a file that fails either is deleted (it cannot be resumed)."""
    size = partial.stat().st_size
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"got {size} bytes, the hub says {remote.size}"
    elif remote.sha256 is not None:
        digest = _sha256(partial)
        if digest != remote.sha256:
            problem = f"sha256 {digest[:16]}..., the hub says {remote.sha256[:16]}..."
    if problem:
        partial.unlink()
        raise ModelError(f"--model {spec}: downloaded {remote.filename} is not the hub's file ({problem}); it "
                         "was deleted: run again, or check the mirror HF_ENDPOINT names")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _link(blob: Path, pointer: Path) -> None:
    """The snapshot entry: a relative symlink to the blob (a hard link where symlinks are not
    allowed), put in place atomically."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp)
    except OSError:
        os.link(blob, tmp)
    os.replace(tmp, pointer)


def _check_room(spec: str, folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ModelError(f"--model {spec}: {folder} has {gib(free)} free, the download needs {gib(needed)} more: "
                         "free some space or point HF_HOME (or HF_HUB_CACHE) at a larger disk")


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """huggingface_hub's own bars, switched off for this download when not `show`."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if show or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


# ------------------------------------------------------------------ ModelScope


def modelscope_pin() -> str:
    """'modelscope==X.Y.Z' as requirements-hub.txt pins it."""
    with contextlib.suppress(OSError):
        for line in HUB_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("modelscope=="):
                return line.split("#")[0].strip()
    return "modelscope"


def check_modelscope_importable(spec: str) -> None:
    try:
        import modelscope.hub.api  # noqa: F401
        import modelscope.hub.file_download  # noqa: F401
    except ImportError as error:
        raise ModelError(f"--model {spec}: the modelscope package cannot be imported ({_first_line(error)}): "
                         f"pip install {modelscope_pin()}") from None


def modelscope_endpoint() -> str:
    """The site modelscope asks: $MODELSCOPE_ENDPOINT (modelscope 1.40+), else its own choice
    ($MODELSCOPE_DOMAIN or www.modelscope.cn)."""
    from modelscope.hub.utils.utils import get_endpoint

    return os.environ.get("MODELSCOPE_ENDPOINT") or get_endpoint()


def modelscope_nemo(spec: str) -> tuple[str, Optional[int], str]:
    """(file, size, endpoint) of the repository's .nemo, from ModelScope's file list."""
    check_modelscope_importable(spec)
    from modelscope.hub.api import HubApi

    endpoint = modelscope_endpoint()
    try:
        files = HubApi().get_model_files(repo_of(spec), recursive=True)
    except Exception as error:
        raise ModelError(f"--model {spec}: cannot list the model at ModelScope {endpoint} ({_first_line(error)}); "
                         "set MODELSCOPE_ENDPOINT to a reachable site, use an ORG/NAME name with HF_ENDPOINT, or "
                         "pass a local .nemo (--model PATH)") from None
    sizes = {f["Path"]: f.get("Size") for f in files if f.get("Type") != "tree"}
    filename = choose_nemo(spec, list(sizes), f"ModelScope {endpoint}")
    return filename, sizes[filename], endpoint


def fetch_modelscope(spec: str) -> Fetched:
    """modelscope's own download of the repository's .nemo into its cache ($MODELSCOPE_CACHE)."""
    filename, _, endpoint = modelscope_nemo(spec)
    from modelscope.hub.file_download import model_file_download

    try:
        path = model_file_download(repo_of(spec), filename)
    except Exception as error:
        raise ModelError(f"--model {spec}: download of {filename} from ModelScope {endpoint} failed "
                         f"({_first_line(error)}); run again to resume") from None
    return Fetched(path, f"ModelScope {endpoint}")


def fetch_nemo(spec: str, progress: Optional[bool] = None) -> Fetched:
    """The local .nemo for a hub name (see hub_of)."""
    if hub_of(spec) == MODELSCOPE:
        return fetch_modelscope(spec)
    return fetch_huggingface(spec, progress=progress)


# ------------------------------------------------------------------ the dry-run's look


def describe_hub_source(spec: str) -> tuple[bool, str, Optional[int]]:
    """(usable, what will be used and from where, the file's size): one model-info request and
    one HEAD at most, nothing downloaded."""
    if hub_of(spec) == MODELSCOPE:
        filename, size, endpoint = modelscope_nemo(spec)
        from modelscope.utils.file_utils import get_modelscope_cache_dir

        cache_dir = Path(get_modelscope_cache_dir())
        room_ok, room = disk_room(cache_dir, size or 0)
        return room_ok, (f"ModelScope {endpoint}: {repo_of(spec)}/{filename}, {gib(size)}: downloaded into "
                         f"{cache_dir} unless cached there; {room}"), size
    endpoint, cache_dir, repo = hf_endpoint(), hf_cache_dir(), repo_of(spec)
    if hf_offline():
        cached = cached_nemo(repo, cache_dir)
        if cached is None:
            return False, f"HF_HUB_OFFLINE is set and {cache_dir} holds no .nemo of {repo}", None
        return True, f"cache: {cached} ({gib(cached.stat().st_size)}; HF_HUB_OFFLINE)", cached.stat().st_size
    try:
        remote = remote_nemo(spec, endpoint)
    except Unreachable as error:
        cached = cached_nemo(repo, cache_dir)
        if cached is None:
            return False, unreachable_message(spec, endpoint, str(error)).replace(f"--model {spec}: ", ""), None
        return True, f"cache: {cached} ({gib(cached.stat().st_size)}); {endpoint} unreachable ({error})", \
            cached.stat().st_size
    storage = storage_folder(repo, cache_dir)
    where = f"{endpoint}/{repo} {remote.filename}, {gib(remote.size)}, revision {remote.commit[:12]}"
    if _complete(storage / "blobs" / remote.etag, remote):
        return True, f"cache: {where} (up to date)", remote.size
    partial = storage / "blobs" / (remote.etag + INCOMPLETE_SUFFIX)
    done = partial.stat().st_size if partial.is_file() else 0
    room_ok, room = disk_room(cache_dir, (remote.size or 0) - done)
    resume = f", resumes at {gib(done)}" if done else ""
    return room_ok, f"hub at {where}: to download into {cache_dir}{resume}; {room}", remote.size


def disk_room(folder: Path, needed: int) -> tuple[bool, str]:
    """Whether the disk of `folder` (or of its nearest existing parent) has `needed` bytes free."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    return free >= needed, f"{gib(free)} free on its disk, {gib(needed)} needed"


def gib(size: Optional[int]) -> str:
    """2.47 GiB, 9.9 MiB."""
    if size is None:
        return "size unknown"
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
