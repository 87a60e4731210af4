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
    """A job's progress over its files, several of which may be in work at once:
    `processed_items` counts the files done (failed ones too); audio seconds and percent advance
    as each file's windows finish; the total audio is known once every file was decoded (or
    failed). Every figure only grows."""

    def __init__(self, progress: Progress, files: int):
        self.progress = progress
        self.files = files
        self.lengths: dict[int, float] = {}  # seconds of each file decoded so far
        self.heard: dict[int, float] = {}  # seconds of each file processed
        self.finished: set[int] = set()
        progress.total_items = files
        progress.processed_items = 0
        progress.processed_audio_s = 0.0
        progress.total_audio_s = None
        progress.percent = 0.0

    def hook(self, index: int) -> Callable[[float, float], None]:
        """The progress hook of file `index` (seconds of it processed, its length)."""

        def on_progress(done: float, length: float) -> None:
            self.lengths[index] = length
            self.heard[index] = max(self.heard.get(index, 0.0), done)
            self._update()

        return on_progress

    def file_done(self, index: int) -> None:
        """File `index` is finished (or failed: what was processed of it still counts)."""
        self.finished.add(index)
        self._update()

    def _update(self) -> None:
        progress = self.progress
        fractions = 0.0
        for index in range(self.files):
            if index in self.finished:
                fractions += 1.0
            elif self.lengths.get(index):
                fractions += min(self.heard.get(index, 0.0) / self.lengths[index], 1.0)
        progress.processed_items = len(self.finished)
        progress.processed_audio_s = max(progress.processed_audio_s, sum(self.heard.values()))
        progress.percent = max(progress.percent, 100.0 * fractions / self.files)
        if all(i in self.lengths or i in self.finished for i in range(self.files)):
            progress.total_audio_s = sum(self.lengths.values())
