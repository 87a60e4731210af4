"""The recordings of a batch job (BatchRecognize, BatchTranslateSpeech): checking them when the
job is created, naming them in its result, one file's error, and the job's progress over them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.rpc import status_pb2

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.dsp.audio import AudioError
from speechmesh.operations.job import source_label
from speechmesh.operations.store import Progress
from speechmesh.runtime import errors

#: Most recordings in one job.
MAX_FILES = 100


def check_files(files: Sequence[ops_pb2.AudioInput], field: str = "files") -> int:
    """The number of files; INVALID_ARGUMENT naming `field` (or `field[i]`) for none, more than
    MAX_FILES, or one without a source or with empty content. Whether an upload, a path or a
    URL can be read is the runner's to check (speechmesh.operations.inputs)."""
    if not files:
        raise errors.invalid_argument(field, f"is empty; send 1 to {MAX_FILES} recordings")
    if len(files) > MAX_FILES:
        raise errors.invalid_argument(
            field, f"has {len(files)} recordings; at most {MAX_FILES} per job (start several jobs)"
        )
    for index, file in enumerate(files):
        kind = file.WhichOneof("source")
        if kind is None:
            raise errors.invalid_argument(
                f"{field}[{index}]", "has no source; set content, upload or uri"
            )
        if kind == "content" and not file.content:
            raise errors.invalid_argument(
                f"{field}[{index}].content", "is empty; send the recording's bytes"
            )
    return len(files)


def source_labels(files: Sequence[ops_pb2.AudioInput]) -> list[str]:
    """What each file's result is called (job.source_label: inline files count from 0)."""
    labels, inline = [], 0
    for file in files:
        labels.append(source_label(file, inline))
        inline += file.WhichOneof("source") == "content"
    return labels


def file_error(error: errors.ApiError | AudioError, field: str) -> status_pb2.Status:
    """Why one file failed, as its result's google.rpc.Status (unusable audio names `field`)."""
    if isinstance(error, AudioError):
        error = errors.invalid_argument(field, str(error))
    return error.to_proto()


class FileProgress:
    """A job's progress over its files, taken in order: `processed_items` counts the files done
    (failed ones too), audio seconds and percent advance as each file's windows finish; the
    total audio is known once the last file is decoded. Every figure only grows."""

    def __init__(self, progress: Progress, files: int):
        self.progress = progress
        self.files = files
        #: Audio seconds of the files done, and the most heard of the current one.
        self.done_audio = 0.0
        self.current = 0.0
        progress.total_items = files
        progress.processed_items = 0
        progress.processed_audio_s = 0.0
        progress.total_audio_s = None
        progress.percent = 0.0

    def hook(self, index: int) -> Callable[[float, float], None]:
        """The progress hook of file `index` (seconds of it processed, its length)."""

        def on_progress(done: float, length: float) -> None:
            self.current = max(self.current, done)
            self.progress.processed_audio_s = self.done_audio + self.current
            fraction = min(self.current / length, 1.0) if length > 0 else 1.0
            self.progress.percent = max(
                self.progress.percent, 100.0 * (index + fraction) / self.files
            )
            if index == self.files - 1:
                self.progress.total_audio_s = self.done_audio + length

        return on_progress

    def file_done(self, index: int) -> None:
        """File `index` is finished (or failed: what was processed of it still counts)."""
        self.done_audio += self.current
        self.current = 0.0
        progress = self.progress
        progress.processed_items = index + 1
        progress.processed_audio_s = self.done_audio
        progress.percent = 100.0 * (index + 1) / self.files
        if index == self.files - 1:
            progress.total_audio_s = self.done_audio
