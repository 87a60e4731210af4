"""The TTS benchmark's headline, targets and Markdown report, from its results alone.

    python -m bench.tts_report [bench/results/tts.json] [--out PATH | --out -] [--check]

`headline(results)` picks the figures the issue asked for, `targets(results)` judges the
figures bench.tts measured, and `markdown(results)` renders them as the tables of NAME.md.
Nothing here measures anything.
"""

from __future__ import annotations

import sys

from bench import report
from bench.report import fmt, section, table, target

#: gRPC / direct (the same synthesizer in-process), unary throughput, every concurrency.
GRPC_VS_DIRECT_TARGET = 0.95
#: Streaming first audio may exceed the engine's time for the first sentence by this much.
FIRST_AUDIO_MARGIN_S = 0.05


def _runs(results: dict, part: str) -> list[dict]:
    return results.get(part, {}).get("runs", [])


def _run(results: dict, part: str, concurrency: int) -> dict | None:
    return next((r for r in _runs(results, part) if r["concurrency"] == concurrency), None)


# -- headline and targets --------------------------------------------------------------


def headline(results: dict) -> dict:
    """The figures the issue asks for, from the runs (none where a section was skipped)."""
    out: dict = {}
    one = _run(results, "unary", 1)
    if one:
        out["rtf_p50"] = {p: one[p]["rtf"]["p50"] for p in ("direct", "grpc")}
        out["unary_first_audio_p50_s"] = {p: one[p]["latency_s"]["p50"] for p in ("direct", "grpc")}
    for r in _runs(results, "unary"):
        out[f"throughput_c{r['concurrency']}_audio_s_per_s"] = {
            "direct": r["direct"]["audio_s_per_s"],
            "grpc": r["grpc"]["audio_s_per_s"],
            "grpc_over_direct": r["grpc_over_direct"],
        }
    stream = _run(results, "streams", 1)
    if stream:
        out["streaming_first_audio_p50_s"] = {
            "direct": stream["direct"]["first_audio_s"]["p50"],
            "grpc": stream["grpc"]["first_audio_s"]["p50"],
            "first_sentence_alone": stream["first_sentence_alone"]["first_audio_s"]["p50"],
        }
    voices = results.get("voices")
    if voices:
        out["stored_voice_saves_p50_s"] = voices["saved_p50_difference_s"]
    return out


def targets(results: dict) -> list[dict]:
    out = [
        target(
            f"unary_grpc_over_direct_c{r['concurrency']}",
            f"gRPC / direct throughput (audio s per s), {r['concurrency']} concurrent"
            " Synthesize callers",
            r["grpc_over_direct"],
            ">=",
            GRPC_VS_DIRECT_TARGET,
        )
        for r in _runs(results, "unary")
    ]
    stream = _run(results, "streams", 1)
    if stream:
        alone = stream["first_sentence_alone"]["first_audio_s"]["p50"]
        out.append(
            target(
                "streaming_first_audio_c1",
                "StreamingSynthesize first audio p50 (s, from the piece completing the first"
                " sentence) vs the engine alone on that sentence p50 + 50 ms",
                stream["grpc"]["first_audio_s"]["p50"],
                "<=",
                alone + FIRST_AUDIO_MARGIN_S if alone is not None else None,
                valid=not stream["grpc"]["errors"],
            )
        )
    return out


# -- Markdown ---------------------------------------------------------------------


def markdown(results: dict) -> str:
    env = results["environment"]
    voice = results["voice"]
    lines = [
        "# TTS benchmark",
        "",
        f"{env['model']} ({'random weights' if env.get('random_weights') else 'trained'}) on"
        f" {env['device']} ({env['dtype']}"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"), {env['cpu_count']} CPUs ({env['cpu_model']}), torch {env['torch']} with"
        f" {env['torch_threads']} threads; max batch {env['max_batch_size']}, batch wait"
        f" {env['max_batch_wait_ms']:g} ms; {env['date']}, {report.commit(env)};"
        f" {results['duration_s']:.0f} s (warm-up {results.get('warmup_s') or 0:.0f} s)"
        + (", --quick" if results["quick"] else "")
        + f". Load average at start / end: {report.load_averages(env)}.",
        "",
        *report.noise_warning(results, ("unary", "streams")),
        f"Every call speaks in {voice['name']}, cloned from {voice['reference']}"
        f" ({voice['stored_reference_s']:.1f} s stored, {voice['prompt_frames']} codec frames);"
        " both paths make the same calls with the same seeds. All ratios are between figures"
        " measured in this one run, on the same loaded model.",
        "",
    ]
    lines += report.parts(
        results, unary=_unary_markdown, streams=_streams_markdown, voices=_voices_markdown
    )
    lines += section("Targets", report.targets_table(results["targets"]))
    return "\n".join(lines)


def _pair(direct, grpc) -> str:
    return f"{direct} / {grpc}"


def _unary_markdown(unary: dict) -> list[str]:
    rows = []
    for r in unary["runs"]:
        g, d = r["grpc"], r["direct"]
        rows.append(
            [
                r["concurrency"],
                fmt(d["audio_s_per_s"]),
                fmt(g["audio_s_per_s"]),
                fmt(r["grpc_over_direct"], 3),
                _pair(fmt(d["rtf"]["p50"], 3), fmt(g["rtf"]["p50"], 3)),
                _pair(fmt(d["latency_s"]["p50"]), fmt(g["latency_s"]["p50"])),
                _pair(fmt(d["audio_s"], 1), fmt(g["audio_s"], 1)),
                _pair(
                    fmt(d["batches"]["mean_batch_size"], 1),
                    fmt(g["batches"]["mean_batch_size"], 1),
                ),
                _pair(
                    fmt(d["cpu"]["other_processes_cores"]),
                    fmt(g["cpu"]["other_processes_cores"]),
                ),
            ]
        )
    header = (
        "callers | direct audio s/s | gRPC audio s/s | gRPC / direct"
        " | RTF p50 direct / gRPC | latency p50 s direct / gRPC | audio s direct / gRPC"
        " | mean batch direct / gRPC | other cores direct / gRPC"
    )
    return section(
        "Synthesize (one sentence per call)",
        "Throughput in seconds of audio produced per wall second; real-time factor (call"
        " latency / audio seconds) and latency per call. A unary call returns all its audio"
        " at once: with one caller, its latency is the time to first audio.",
        table(header, rows),
    )


def _streams_markdown(streams: dict) -> list[str]:
    rows = []
    for r in streams["runs"]:
        for path in ("direct", "grpc", "first_sentence_alone"):
            f = r.get(path)
            if not f:
                continue
            rows.append(
                [
                    r["concurrency"],
                    path.replace("_", " "),
                    f["streams"],
                    fmt(f["first_audio_s"]["p50"], 3),
                    fmt(f["first_audio_s"]["p90"], 3),
                    " / ".join(
                        fmt(f["first_audio_parts_s"][k], 3)
                        for k in ("to_model_s", "model_s", "from_model_s")
                    ),
                    fmt(f["audio_s"], 1),
                    fmt(f["batches"]["mean_batch_size"], 1),
                    fmt(f["cpu"]["other_processes_cores"]),
                    len(f["errors"]),
                ]
            )
    header = (
        "streams | path | count | first audio p50 s | p90 s"
        " | p50 s: to / in / from the model | audio s | mean batch | other cores"
        " | errors"
    )
    return section(
        "StreamingSynthesize (text arriving word by word)",
        f"{streams['pieces']} pieces, one every {streams['piece_interval_s'] * 1000:g} ms;"
        f' the first sentence ("{streams["first_sentence"]}") is complete when piece'
        f" {streams['first_sentence_completed_by_piece']} is sent (it carries the start of"
        " the next). Seconds from then to the first audio chunk; 'first sentence alone' is"
        " that sentence through the synthesizer in-process with nothing else (the engine's"
        " own time for it). That time splits at the forward pass that spoke the first"
        " sentence: the wait before it, the pass itself, and the time from its end to the"
        " audio at the caller.",
        table(header, rows),
    )


def _voices_markdown(voices: dict) -> list[str]:
    s, i, d = voices["stored_latency_s"], voices["inline_latency_s"], voices["saved_s"]
    audio = voices["audio_s"]
    return section(
        "Stored voice vs inline reference audio (Synthesize)",
        f"The same sentence and seed, {voices['calls_per_path']} calls each, interleaved;"
        " inline, the service decodes, validates and Mimi-encodes the recording on every"
        " call (the prompt it makes is the stored one:"
        f" {fmt(voices['inline_prompt_matches_stored'])}).",
        table(
            "voice | latency p50 s | p90 s | audio s",
            [
                ["stored", fmt(s["p50"], 3), fmt(s["p90"], 3), fmt(audio["stored"])],
                ["inline", fmt(i["p50"], 3), fmt(i["p90"], 3), fmt(audio["inline"])],
                ["saved (per pair)", fmt(d["p50"], 3), fmt(d["p90"], 3), ""],
            ],
        ),
    )


def main(argv: list[str] | None = None) -> int:
    return report.rerender("tts", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
