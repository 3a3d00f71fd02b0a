"""The parakeet NPU toolkit as a library. Importing it is cheap and has no side effects: the
API below loads torch and NeMo only when first used.

    from common import load_model
    model = load_model("demo", device="cpu")
    print(model.transcribe("examples/demo.wav").text)
"""

_API = ("Model", "load_model", "transcribe", "check_accuracy", "AccuracyResult", "FileComparison", "benchmark",
        "PerfResult", "PerfRow", "check_machine", "CheckResult", "Finding", "FileRecord", "SAMPLE_RATE")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'common' has no attribute {name!r}")
