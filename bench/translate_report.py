"""The translate benchmark's targets and Markdown report, from its results alone.

    python -m bench.translate_report [bench/results/translate.json] [--out PATH | -] [--check]

`targets(results)` judges the figures bench.translate measured; `markdown(results)` renders
them as the tables of NAME.md. Nothing here measures anything.
"""

from __future__ import annotations

import sys

from bench import report
from bench.report import fmt, section, table, target

#: gRPC / direct (the same translator in-process), TranslateText, every shape.
GRPC_VS_DIRECT_TARGET = 0.95
#: 16 concurrent one-sentence callers / one caller sending 16 sentences per call.
SINGLES_VS_ONE_CALL_TARGET = 0.9


def targets(results: dict) -> list[dict]:
    runs = results.get("text", {}).get("runs", [])
    out = []
    for r in runs:
        per_call, callers = r["sentences_per_call"], r["concurrency"]
        what = f"{per_call} sentences per call, {callers} concurrent callers"
        name = f"text_grpc_over_direct_{per_call}x{callers}"
        ratio = r["grpc_over_direct"]
        out.append(
            target(name, f"gRPC / direct throughput, {what}", ratio, ">=", GRPC_VS_DIRECT_TARGET)
        )
    shape = {(r["sentences_per_call"], r["concurrency"]): r["grpc"] for r in runs}
    if (1, 16) in shape and (16, 1) in shape:
        ratio = shape[(1, 16)]["sentences_per_s"] / shape[(16, 1)]["sentences_per_s"]
        out.append(
            target(
                "text_16_single_callers_over_one_16_sentence_call",
                "16 concurrent 1-sentence gRPC callers / 1 caller sending 16 sentences per call"
                " (throughput)",
                ratio,
                ">=",
                SINGLES_VS_ONE_CALL_TARGET,
            )
        )
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Translate benchmark",
        "",
        f"{env['model']} ({'random weights' if env.get('random_weights') else 'trained'}) on"
        f" {env['device']} ({env['dtype']}), {env['cpu_count']} CPUs ({env['cpu_model']}),"
        f" torch {env['torch']} with {env['torch_threads']} threads; max batch"
        f" {env['max_batch_size']}, batch wait {env['max_batch_wait_ms']} ms;"
        f" {env['date']}, {report.commit(env)}; {results['duration_s']:.0f} s.",
        "",
    ]
    lines += report.parts(
        results,
        text=_text_markdown,
        speech_to_speech=_speech_markdown,
        streams=_streams_markdown,
    )
    lines += ["## Targets", "", *report.target_lines(results["targets"])]
    return "\n".join(lines) + "\n"


def _text_markdown(text: dict) -> list[str]:
    rows = [
        [
            r["sentences_per_call"],
            r["concurrency"],
            fmt(r["direct"]["sentences_per_s"], 1),
            fmt(r["grpc"]["sentences_per_s"], 1),
            fmt(r["grpc_over_direct"], 3),
            fmt(r["grpc"]["latency_s"]["p50"], 3),
            fmt(r["grpc"]["batches"]["mean_batch_size"], 1),
            f"{fmt(r['direct']['cpu']['other_processes_cores'])} /"
            f" {fmt(r['grpc']['cpu']['other_processes_cores'])}",
        ]
        for r in text["runs"]
    ]
    header = (
        "sentences/call | callers | direct | gRPC | gRPC/direct | gRPC p50 s | mean batch"
        " | other cores (direct / gRPC)"
    )
    return section("TranslateText (sentences per second)", table(header, rows))


def _speech_markdown(speech: dict) -> list[str]:
    rows = [
        [
            r["concurrency"],
            fmt(r["direct"]["rtf"]["p50"], 3),
            fmt(r["grpc"]["rtf"]["p50"], 3),
            fmt(r["direct"]["audio_s_per_s"], 2),
            fmt(r["grpc"]["audio_s_per_s"], 2),
            fmt(r["grpc_over_direct"], 3),
        ]
        for r in speech["runs"]
    ]
    header = (
        "callers | RTF p50 direct | RTF p50 gRPC | audio s/s direct | audio s/s gRPC | gRPC/direct"
    )
    return section("TranslateSpeech to text and speech", table(header, rows))


def _streams_markdown(streams: dict) -> list[str]:
    rows = [
        [
            r["concurrency"],
            path,
            r[path]["segments"],
            fmt(r[path]["endpoint_to_text_s"]["p50"], 3),
            fmt(r[path]["endpoint_to_text_s"]["p90"], 3),
            fmt(r[path]["endpoint_to_first_audio_s"]["p50"], 3),
            fmt(r[path]["endpoint_to_first_audio_s"]["p90"], 3),
            len(r[path]["errors"]),
        ]
        for r in streams["runs"]
        for path in ("direct", "grpc")
    ]
    return section(
        "StreamingTranslateSpeech (live, text and speech)",
        f"Seconds from the end of a segment's speech plus the {streams['endpoint_silence_s']}"
        " s of silence that ends it, to its translated text and to its first audio chunk.",
        table("streams | path | segments | to text p50 | p90 | to audio p50 | p90 | errors", rows),
    )


def main(argv: list[str] | None = None) -> int:
    return report.rerender("translate", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
