"""How the engines of the three services run jobs: each job's own result or error (an option
it cannot honour is InvalidOptionError), and a batch that fails as a whole retried job by job
so that only the bad job fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from speechmesh.inference.languages import primary_subtag

J = TypeVar("J")
R = TypeVar("R")
P = TypeVar("P")


class InvalidOptionError(ValueError):
    """A request option an engine cannot honour; `option` names it (e.g. "language")."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def option_language(tag: str, option: str) -> str:
    """The primary language subtag of the BCP-47 `tag` a request gave as `option`; a malformed
    tag is InvalidOptionError(option)."""
    try:
        return primary_subtag(tag)
    except ValueError as error:
        raise InvalidOptionError(option, str(error)) from None


def run_jobs(
    jobs: Sequence[J],
    prepare: Callable[[J], P],
    run: Callable[[list[J], list[P]], list[R]],
) -> list[R | BaseException]:
    """One result or exception per job, in order.

    `prepare(job)` checks a job and returns what `run` needs of it; the exception it raises is
    that job's result. `run(jobs, prepared)` runs the rest in one forward pass. When that
    fails, one bad input may have sunk the batch: each job is run alone, so only it fails.
    """
    results: list[Any] = [None] * len(jobs)
    rows: list[int] = []
    prepared: list[P] = []
    for i, job in enumerate(jobs):
        try:
            prepared.append(prepare(job))
            rows.append(i)
        except Exception as error:
            results[i] = error
    if rows:
        batch = [jobs[i] for i in rows]
        try:
            outputs: list = run(batch, prepared)
        except Exception as error:
            if len(batch) == 1:
                outputs = [error]
            else:
                outputs = [
                    _alone(run, job, item) for job, item in zip(batch, prepared, strict=True)
                ]
        for i, output in zip(rows, outputs, strict=True):
            results[i] = output
    return results


def _alone(run: Callable[[list[J], list[P]], list[R]], job: J, item: P) -> R | BaseException:
    try:
        return run([job], [item])[0]
    except Exception as error:
        return error


def run_one(run_batch: Callable[[list[J]], list[R | BaseException]], job: J) -> R:
    """`job` alone through an engine's `run_batch`; its error raised (what warm-ups do)."""
    (result,) = run_batch([job])
    if isinstance(result, BaseException):
        raise result
    return result


def right_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows as one (rows, longest) tensor padded with `pad` on the right, and its
    attention mask (1 over each row's own ids)."""
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask
