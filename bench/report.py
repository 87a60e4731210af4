"""What the benchmark reports share: numbers, Markdown tables, targets, the results JSON.

A benchmark is two modules: bench.NAME measures and writes NAME.json (every figure, the targets
and whether each passed); bench.NAME_report judges those figures (its `targets` and, where it
has one, its `headline`) and renders NAME.md from the results alone (its `markdown`).
`write_results`, which the measuring module calls, renders the Markdown from what NAME.json
holds, so that re-rendering the report later gives the same file:

    python -m bench.NAME_report [bench/results/NAME.json] [--out PATH | --out -] [--check]

Nothing here measures anything or imports the services, torch or numpy.
"""

from __future__ import annotations

import argparse
import json
import operator
import pathlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

#: A target's comparison, and how the report writes it.
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
SYMBOLS = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


# -- numbers and tables ----------------------------------------------------------------


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "pass" if value else "**FAIL**"
    if isinstance(value, int):
        return f"{value}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def table(header: str | Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: `header` is its cells, or its header row written as "a | b | c"."""
    if isinstance(header, str):
        header = header.split(" | ")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def section(title: str, *blocks: str) -> list[str]:
    """The lines of a Markdown section: its title as a level-2 heading, then each block (a
    paragraph, a table), each followed by a blank line."""
    return [f"## {title}", "", *(line for block in blocks for line in (block, ""))]


def parts(results: dict, **renderers: Callable[[dict], list[str]]) -> list[str]:
    """The sections of each part of the results (a key: its renderer, in order), rendered from
    that part; parts the run skipped are left out."""
    return [
        line
        for key, render in renderers.items()
        if results.get(key)
        for line in render(results[key])
    ]


def commit(env: dict) -> str:
    """The commit measured, as a report's first paragraph names it."""
    dirty = " (dirty)" if env.get("git_dirty") else ""
    return f"commit {(env.get('git_commit') or '')[:10]}{dirty}"


def load_averages(env: dict) -> str:
    """The one-minute load average when the run started and when it ended."""
    return " / ".join(f"{env[k][0]:.2f}" for k in ("load_average_at_start", "load_average_at_end"))


def noise_warning(
    results: dict, sections: Sequence[str], paths: Sequence[str] = ("direct", "grpc")
) -> list[str]:
    """Markdown lines warning that other processes took a noticeable share of the CPU during
    the runs of `sections` (each a list of runs with figures per path: those of `paths` that a
    run has); [] if not."""
    cores = [
        r[p]["cpu"]["other_processes_cores"]
        for part in sections
        for r in results.get(part, {}).get("runs", [])
        for p in paths
        if p in r
    ]
    cores = [c for c in cores if c is not None]
    if not cores or max(cores) < 0.2:
        return []
    return [
        f"**Disturbed run**: other processes kept up to {max(cores):.2f} of"
        f" {results['environment']['cpu_count']} cores busy during some measurements; figures"
        " measured then are slower and noisier than the machine's own: compare ratios, and rerun"
        " on a quiet machine.",
        "",
    ]


# -- targets ------------------------------------------------------------------------------


def target(
    name: str, description: str, measured, op: str, threshold, *, valid: bool = True, **extra
) -> dict:
    """One target: `measured op threshold` passes (never when either is None or not `valid`).
    `extra` (e.g. gating=False: reported, not counted in all_targets_pass) is kept as given."""
    passed = valid and measured is not None and threshold is not None
    return {
        "name": name,
        "description": description,
        "measured": measured,
        "op": op,
        "threshold": threshold,
        "pass": bool(passed and OPS[op](measured, threshold)),
        **extra,
    }


def targets_table(targets: Sequence[dict], number: Callable = lambda v: fmt(v, 3)) -> str:
    return table(
        "target | measured | needed | result",
        [
            [
                t["description"],
                number(t["measured"]),
                f"{SYMBOLS[t['op']]} {number(t['threshold'])}",
                fmt(t["pass"]),
            ]
            for t in targets
        ],
    )


def target_lines(targets: Sequence[dict], unit: str = "") -> list[str]:
    """The targets as a Markdown list, the threshold as given."""
    return [
        f"- {t['description']}: {fmt(t['measured'], 3)}{unit}"
        f" ({SYMBOLS[t['op']]} {t['threshold']}{unit}): {fmt(bool(t['pass']))}"
        + ("" if t.get("gating", True) else " (reported, not gating)")
        for t in targets
    ]


# -- the results JSON and the report ----------------------------------------------------------


def to_json(value, indent: int = 0, width: int = 100) -> str:
    """Indented JSON, with any object or array that fits in `width` characters on one line;
    floats to 4 decimals (0.1 ms, or 0.01 % of a ratio)."""
    if indent == 0:
        value = _rounded(value)
    flat = json.dumps(value, ensure_ascii=False)
    if len(flat) + indent <= width or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(k, ensure_ascii=False)}: {to_json(v, indent + 2, width)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + to_json(v, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Writes `text` to a *.tmp file beside `path`, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def judge(results: dict, report: ModuleType) -> dict:
    """What NAME.json ends with: the headline figures `report.headline` picks (where the report
    has one), the targets `report.targets` judges, and whether every gating one passed."""
    out = {"headline": report.headline(results)} if hasattr(report, "headline") else {}
    targets = report.targets(results)
    gating = [t["pass"] for t in targets if t.get("gating", True)]
    return {**out, "targets": targets, "all_targets_pass": all(gating)}


def render(results: dict, report: ModuleType) -> str:
    """Judges `results` (the verdict replaces any they hold) and renders them with
    `report.markdown`."""
    results.update(judge(results, report))
    return report.markdown(results)


def write_results(out: pathlib.Path, name: str, results: dict, report: ModuleType) -> str:
    """Writes NAME.json (the figures, then the report's verdict) and NAME.md, rendered from the
    JSON as written (floats rounded) so that `python -m bench.NAME_report` renders the same.
    Returns the Markdown."""
    results = json.loads(to_json(results))
    text = render(results, report)
    write_atomic(out / f"{name}.json", to_json(results) + "\n")
    write_atomic(out / f"{name}.md", text)
    return text


def rerender(name: str, report: ModuleType, argv: list[str] | None = None) -> int:
    """`python -m bench.NAME_report`: NAME.md again from an existing NAME.json, no measuring.
    The JSON is left as it is; the report judges its figures against today's targets."""
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{name}_report",
        description=f"Renders the {name} benchmark's Markdown report from its results JSON.",
    )
    parser.add_argument(
        "results",
        nargs="?",
        type=pathlib.Path,
        default=RESULTS / f"{name}.json",
        help=f"the results JSON (default: bench/results/{name}.json)",
    )
    parser.add_argument(
        "--out", help="the Markdown file to write (default: the results path with .md; - stdout)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the Markdown file is not what the results render to",
    )
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        parser.error(f"cannot read {args.results}: {error}")
    text = render(results, report)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    path = pathlib.Path(args.out) if args.out else args.results.with_suffix(".md")
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            print(f"{path} is not what {args.results} renders to", file=sys.stderr)
            return 1
        print(f"{path} is current", file=sys.stderr)
        return 0
    write_atomic(path, text)
    print(f"wrote {path}", file=sys.stderr)
    return 0
