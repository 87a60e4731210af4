"""The realtime benchmark's targets and Markdown report, from its results alone.

    python -m bench.realtime_report [bench/results/realtime.json] [--out PATH | -] [--check]

`targets(results)` judges the figures bench.realtime measured (realtime WebSocket sessions
against StreamingRecognize on the same clips); `markdown(results)` renders them as the tables of
NAME.md. Nothing here measures anything.
"""

from __future__ import annotations

import sys

from bench import report
from bench.report import fmt, section, table, target

#: Realtime / gRPC throughput (speech seconds per wall second), every concurrency.
THROUGHPUT_RATIO_TARGET = 0.95
#: |realtime p50 - gRPC p50| of end of speech -> final (completed), every concurrency.
P50_DIFF_TARGET_MS = 50.0
PATHS = ("grpc", "realtime")
LABELS = {"grpc": "gRPC StreamingRecognize", "realtime": "realtime WebSocket"}


def targets(results: dict) -> list[dict]:
    out = []
    for r in results.get("runs", []):
        c = r["concurrency"]
        both = r["grpc"]["all_completed"] and r["realtime"]["all_completed"]
        cmp = r["realtime_vs_grpc"]
        diff = cmp["end_of_speech_to_final_p50_diff_s"]
        out.append(
            target(
                f"throughput_ratio_c{c}",
                f"realtime / gRPC throughput, {_sessions(c)}",
                cmp["throughput_ratio"],
                ">=",
                THROUGHPUT_RATIO_TARGET,
                valid=both,
            )
        )
        out.append(
            target(
                f"end_of_speech_to_final_p50_diff_ms_c{c}",
                f"end of speech to final p50, realtime − gRPC, absolute (ms), {_sessions(c)}",
                None if diff is None else abs(diff) * 1000,
                "<=",
                P50_DIFF_TARGET_MS,
                valid=both,
            )
        )
    return out


def _sessions(c: int) -> str:
    return f"{c} concurrent session{'s' if c > 1 else ''}"


def markdown(results: dict) -> str:
    lines = ["# Realtime benchmark", "", _environment(results), "", _setup(results), ""]
    lines += _noise(results)
    lines += _runs_markdown(results["runs"])
    lines += section("Targets", report.targets_table(results["targets"], _number))
    verdict = "pass" if results["all_targets_pass"] else "**FAIL**"
    lines += [f"All targets: {verdict}.", ""]
    noisy = [r["concurrency"] for r in results["runs"] if _spread_ms(r) > P50_DIFF_TARGET_MS]
    if noisy:
        lines += [
            "The p50 of one path moved by more than the"
            f" {P50_DIFF_TARGET_MS:.0f} ms target from one of its blocks to another at"
            f" {', '.join(map(str, noisy))} concurrent sessions (the noise column above): there"
            " the run cannot resolve a difference of that size, and the latency verdict says"
            " more about the machine than about the paths. Rerun on a quiet machine.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _number(value) -> str:
    return fmt(value, 3)


def _environment(results: dict) -> str:
    env = results["environment"]
    engine = env.get("engine", {})
    return (
        f"Model {env['model']} ({engine.get('runtime')}, {env['device']}, {env['dtype']});"
        f" {env.get('cpu_count')} CPUs ({env.get('cpu_model')}); grpcio {env.get('grpcio')},"
        f" websockets {env.get('websockets')}; {env.get('date')}, {report.commit(env)};"
        f" load average {report.load_averages(env)} (start / end);"
        f" {results['duration_s']:.0f} s{' (quick)' if results['quick'] else ''}."
        + (f" Note: {env['note']}." if env.get("note") else "")
    )


def _setup(results: dict) -> str:
    s = results["setup"]
    clips = results["clips"]
    audio = sum(c["audio_s"] for c in clips)
    return (
        f"One ASR service in this process; the same {len(clips)} clips ({audio:.1f} s,"
        f" {', '.join(c['name'] for c in clips)}) streamed live both ways: {s['audio']}, in"
        f" {s['chunk_s'] * 1000:.0f} ms chunks, each sent when a microphone would have captured"
        f" it, then {s['trailing_silence_s']:.0f} s of silence. gRPC: StreamingRecognize, then"
        " a half-close. Realtime: a plain `websockets` client on `/v1/realtime` (session.update,"
        " input_audio_buffer.append, then the SDK's end marker, a session.update answered once"
        " everything before it is transcribed). Same endpointing both ways (identical"
        f" StreamingRecognitionConfig: {fmt(s['realtime_config_identical_to_grpc'])}): interim"
        f" results, voice activity events, endpoint silence {s['endpoint_silence_s'] * 1000:.0f}"
        f" ms, VAD threshold {s['vad_threshold']}, word time offsets. End of speech to final:"
        " from handing over the chunk that ends the clip's speech to the arrival of the stream's"
        " last final (gRPC is_final; realtime `...transcription.completed`). Throughput: speech"
        " seconds per wall second of the blocks (real-time pacing bounds it). Paths run on the"
        " same blocks of streams, interleaved (A B, B A, ...); the clients share the server's"
        " event loop."
    )


def _noise(results: dict) -> list[str]:
    cores = [
        r[p]["cpu"]["other_processes_cores"]
        for r in results["runs"]
        for p in PATHS
        if r[p]["cpu"]["other_processes_cores"] is not None
    ]
    if not cores or max(cores) < 0.2:
        return []
    return [
        f"**Disturbed run**: other processes kept up to {max(cores):.2f} of"
        f" {results['environment']['cpu_count']} cores busy during some blocks (other engineers'"
        " work on the same machine); absolute latencies are slower than the machine's own:"
        " compare the paths, which were interleaved.",
        "",
    ]


def _runs_markdown(runs: list[dict]) -> list[str]:
    rows = []
    for r in runs:
        for name in PATHS:
            f = r[name]
            eos = f["end_of_speech_to_final_s"]
            rows.append(
                [
                    r["concurrency"],
                    LABELS[name],
                    f"{f['completed']}/{f['streams']}",
                    fmt(f["audio_s_per_s"], 3),
                    fmt(_ms(eos["p50"]), 0),
                    fmt(_ms(eos["p90"]), 0),
                    fmt(_ms(f["endpoint_to_final_s"]["p50"]), 0),
                    fmt(_ms(f["first_interim_s"]["p50"]), 0),
                    fmt(f["wer"], 3),
                    fmt(_ms(f["max_send_lag_s"]), 0),
                    fmt(f["cpu"]["other_processes_cores"]),
                ]
            )
    header = (
        "sessions | path | completed | speech s/s | EoS→final p50 ms | p90 ms"
        " | endpoint→final p50 ms | first interim p50 ms | WER | max send lag ms | other cores"
    )
    cmp_rows = [
        [
            r["concurrency"],
            fmt(r["realtime_vs_grpc"]["throughput_ratio"], 3),
            fmt(_ms(r["realtime_vs_grpc"]["end_of_speech_to_final_p50_diff_s"]), 1),
            fmt(_ms(r["realtime_vs_grpc"]["end_of_speech_to_final_p90_diff_s"]), 1),
            _per_block(r["realtime_vs_grpc"]["p50_per_block_s"]),
            fmt(_spread_ms(r), 0),
        ]
        for r in runs
    ]
    return section(
        "Per path",
        "EoS→final: end of speech to the last final. Endpoint→final: from the moment the"
        " utterance's last speech plus the endpoint silence had been sent. First interim:"
        " from the stream's start (realtime: the first delta, which carries only the stable"
        " prefix of an interim hypothesis, so it comes later than gRPC's first interim result"
        " by design). Max send lag: how late the pacer ever sent a chunk.",
        table(header, rows),
    ) + section(
        "Realtime vs gRPC",
        "Throughput ratio realtime / gRPC; end of speech to final, realtime − gRPC in ms"
        " (positive: realtime slower), pooled over the blocks; and each block's p50 in ms,"
        " in the order they ran (g: gRPC, r: realtime), to show how much the machine moved"
        " them; noise: the largest change of one path's block p50 between its blocks.",
        table(
            "sessions | throughput ratio | p50 diff ms | p90 diff ms | p50 per block ms | noise ms",
            cmp_rows,
        ),
    )


def _per_block(blocks: list[list]) -> str:
    return ", ".join(f"{name[0]} {fmt(_ms(p50), 0)}" for name, p50 in blocks)


def _spread_ms(run: dict) -> float:
    """The largest difference between two blocks' p50 of the same path, ms (0: one block)."""
    spreads = [0.0]
    for name in PATHS:
        p50s = [p for n, p in run["realtime_vs_grpc"]["p50_per_block_s"] if n == name and p]
        if p50s:
            spreads.append((max(p50s) - min(p50s)) * 1000)
    return max(spreads)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def main(argv: list[str] | None = None) -> int:
    return report.rerender("realtime", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
