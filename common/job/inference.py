"""A transcription job as inference.py runs it: inputs checked cheaply, the device chosen and
announced, the model loaded once (not at all when no input is usable), results yielded batch by
batch as they finish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from ..inputs.audio import check_audio_header
from ..device.accelerators import DeviceChoice, device_name, prepare_device
from ..errors import ToolkitError
from ..inputs.sources import AudioInput
from ..model.loading import LoadedModel, ModelSource, describe, load_model
from ..engine.transcriber import TIMESTAMP_KINDS, FileResult, TranscribeOptions, transcribe_inputs


def timestamp_kinds(choice: str, output_format: str) -> tuple[str, ...]:
    """--timestamps none|word|segment|char|all as kinds; subtitles need segments."""
    kinds = TIMESTAMP_KINDS if choice == "all" else () if choice == "none" else (choice,)
    if output_format in ("srt", "vtt"):
        kinds = tuple(dict.fromkeys(kinds + ("segment",)))
    return kinds


@dataclass(frozen=True)
class JobSettings:
    options: TranscribeOptions
    engine_name: str  # as the user named it: batched | nemo
    loader: str = "fast"
    decoder_device: Optional[str] = None
    quiet: bool = True
    progress: bool = False


class InferenceJob:
    def __init__(self, source: ModelSource, items: list[AudioInput], device: DeviceChoice, settings: JobSettings,
                 say: Callable[[str], None] = lambda _: None):
        self.source, self.items, self.choice, self.settings, self.say = source, items, device, settings, say
        self.loaded: Optional[LoadedModel] = None
        self.device_info = {"device": device.device, "reason": device.reason}

    def results(self) -> Iterator[tuple[int, FileResult]]:
        """(input index, result) for every input, in the order batches finish."""
        for item in self.items:
            if item.error is None:
                try:
                    check_audio_header(item.path)
                except ToolkitError as error:
                    item.error = str(error)
        if all(item.error for item in self.items):
            for index, item in enumerate(self.items):
                yield index, FileResult(item.path, error=item.error, reference_text=item.text)
            return
        self._load()
        yield from transcribe_inputs(self.loaded, self.items, self.settings.options, progress=self.settings.progress)

    def _load(self) -> None:
        settings, device = self.settings, self.choice.device
        prepare_device(device, exact_fp32=settings.options.dtype == "fp32")
        self.loaded = load_model(self.source.spec, device, timestamps=bool(settings.options.timestamp_kinds),
                                 quiet=settings.quiet, source=self.source, loader=settings.loader,
                                 decoder_device=settings.decoder_device)
        if self.source.note:
            self.say(f"model: {describe(self.source)}")
        if "failed" in self.loaded.info["loader"]:
            self.say(f"warning: loaded with {self.loaded.info['loader']}")
        self.device_info.update({"name": device_name(device), "dtype": settings.options.dtype,
                                 "engine": settings.engine_name,
                                 "decoder_device": settings.decoder_device or device})
