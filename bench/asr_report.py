"""The ASR benchmark's targets and Markdown report, from its results alone.

    python -m bench.asr_report [bench/results/asr.json] [--out PATH | --out -] [--check]

`targets(results)` judges the figures bench.asr measured; `markdown(results)` renders them (and
the targets) as the tables of NAME.md. Nothing here measures anything.
"""

from __future__ import annotations

import sys

from bench import report
from bench.report import fmt, section, table, target

#: speechmesh gRPC (CTranslate2) / the best faster-whisper configuration, every concurrency.
OVER_FASTER_WHISPER_TARGET = 1.0
#: End of speech -> final, p50, at FINAL_P50_STREAMS concurrent streams (which all complete).
FINAL_P50_TARGET_S = 1.0
FINAL_P50_STREAMS = 16
#: WER of the CTranslate2 engine <= the transformers engine's + this (unary, 1 caller).
WER_MARGIN = 0.005
#: gRPC / direct (the same recognizer in-process), unary and streams.
GRPC_VS_DIRECT_TARGET = 0.95
#: What the report calls the speechmesh paths (peers: see _label).
PATH_LABELS = {
    "grpc": "speechmesh gRPC, CTranslate2",
    "direct": "speechmesh direct, CTranslate2",
    "transformers_grpc": "speechmesh gRPC, transformers",
    "raw": "raw CTranslate2 engine",
}


# -- targets -----------------------------------------------------------------------


def targets(results: dict) -> list[dict]:
    out = []
    unary = results.get("unary")
    by_c = {r["concurrency"]: r for r in unary["runs"]} if unary else {}
    streams = results.get("streams")
    by_streams = {r["concurrency"]: r for r in streams["runs"]} if streams else {}
    for c, run in by_c.items():
        best = run["faster_whisper_best"]
        if best is None:
            continue
        out.append(
            target(
                f"unary_grpc_over_faster_whisper_c{c}",
                f"speechmesh gRPC (CTranslate2) / best faster-whisper ({_label(best)})"
                f" throughput, {_callers(c)}",
                run["ratios"]["grpc_over_faster_whisper_best"],
                ">=",
                OVER_FASTER_WHISPER_TARGET,
            )
        )
    if FINAL_P50_STREAMS in by_streams:
        g = by_streams[FINAL_P50_STREAMS]["grpc"]
        out.append(
            target(
                f"streams_completed_c{FINAL_P50_STREAMS}",
                f"{FINAL_P50_STREAMS} concurrent real-time gRPC streams: streams completed",
                g["completed"],
                ">=",
                g["streams"],
            )
        )
        out.append(
            target(
                f"end_of_speech_to_final_p50_c{FINAL_P50_STREAMS}",
                f"end of speech → final p50, {FINAL_P50_STREAMS} concurrent gRPC streams (s)",
                g["end_of_speech_to_final_s"]["p50"],
                "<=",
                FINAL_P50_TARGET_S,
            )
        )
    if 1 in by_c and "transformers_grpc" in by_c[1]:
        ours, theirs = by_c[1]["grpc"]["wer"], by_c[1]["transformers_grpc"]["wer"]
        out.append(
            target(
                "wer_ctranslate2_vs_transformers_c1",
                "WER, unary gRPC, 1 caller: CTranslate2 engine vs transformers engine"
                f" ({fmt(theirs, 3)}) + {WER_MARGIN:g}",
                ours,
                "<=",
                None if theirs is None else theirs + WER_MARGIN,
            )
        )
    for c, run in by_c.items():
        out.append(
            target(
                f"unary_grpc_over_direct_c{c}",
                f"gRPC / direct throughput (CTranslate2), unary, {_callers(c)}",
                run["ratios"]["grpc_over_direct"],
                ">=",
                GRPC_VS_DIRECT_TARGET,
            )
        )
    for c, run in by_streams.items():
        out.append(
            target(
                f"stream_grpc_over_direct_c{c}",
                f"gRPC / direct throughput (CTranslate2), {_streams(c)}",
                run["grpc_over_direct"],
                ">=",
                GRPC_VS_DIRECT_TARGET,
            )
        )
    return out


def _callers(n: int) -> str:
    return "1 caller" if n == 1 else f"{n} concurrent callers"


def _streams(n: int) -> str:
    return "1 real-time stream" if n == 1 else f"{n} concurrent real-time streams"


# -- Markdown ---------------------------------------------------------------------


def _label(path: str) -> str:
    if path in PATH_LABELS:
        return PATH_LABELS[path]
    if path.startswith("faster_whisper_w"):
        workers, threads = path.removeprefix("faster_whisper_w").split("_t")
        return f"faster-whisper W={workers} T={threads}"
    if path == "pipeline":
        return "transformers pipeline"
    return path


def _engine_text(e: dict) -> str:
    text = f"{e['runtime']} ({e['dtype']} on {e['device']}"
    if e["runtime"] == "ctranslate2":
        text += f", {e['workers']} workers × {e['threads_per_worker']} threads"
    return text + ")"


def markdown(results: dict) -> str:
    env = results["environment"]
    engines = env.get("engines", {})
    lines = [
        "# ASR benchmark",
        "",
        f"{env['model']}; speechmesh engines: default (engine=auto)"
        f" {_engine_text(engines['default'])}"
        + (f", and {_engine_text(engines['transformers'])}" if "transformers" in engines else "")
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"; {env['cpu_count']} CPUs ({env['cpu_model']}), torch {env['torch']}"
        f" ({env['torch_threads']} threads), transformers {env['transformers']}, ctranslate2"
        f" {env.get('ctranslate2')}, faster-whisper {env.get('faster_whisper')};"
        f" max_batch_size {env['max_batch_size']}, max_batch_wait_ms"
        f" {env['max_batch_wait_ms']:g}; {env['date']}"
        + (", --quick" if results["quick"] else "")
        + f"; the run took {results['duration_s'] / 60:.1f} min. Load average at start / end:"
        f" {report.load_averages(env)}.",
        "",
        *report.noise_warning(results, ("unary", "streams"), _all_paths(results)),
        "All ratios are between figures measured in this one run, on the same clips. Clips: "
        + ", ".join(f"{c['name']} ({c['audio_s']:.1f} s)" for c in results["clips"]),
        "",
    ]
    if results.get("unary"):
        lines += _unary_markdown(results)
    if results.get("raw_model"):
        lines += _raw_markdown(results)
    if results.get("streams"):
        lines += _streams_markdown(results["streams"])
    lines += _memory_markdown(results["memory"])
    lines += section("Targets", report.targets_table(results["targets"], _number))
    return "\n".join(lines)


def _number(value) -> str:
    if value is None or isinstance(value, int):
        return fmt(value)
    return f"{value:.3f}".rstrip("0").rstrip(".") if value == round(value, 3) else fmt(value, 3)


def _all_paths(results: dict) -> tuple[str, ...]:
    paths = ["grpc", "direct"]
    for run in results.get("unary", {}).get("runs", []):
        paths += [p for p in run["paths"] if p not in paths]
    return tuple(paths)


def _unary_markdown(results: dict) -> list[str]:
    runs = results["unary"]["runs"]
    about = (
        "Closed loop: N callers each send their next request as soon as the last is answered;"
        " every path gets the same clips in the same order, in blocks interleaved path by path"
        " (the order reversed every other block). speechmesh:"
        " gRPC Recognize with the clip uploaded as its WAV file (decoded by the service), on the"
        " default engine (CTranslate2) and on the transformers engine; *direct*: the same"
        " recognizer and batcher called in-process. Peers, in this process, from N Python"
        " threads, given the clip already decoded to float32 samples (not the file; they skip"
        ' decoding and RPC): faster-whisper `WhisperModel(device="cpu",'
        ' compute_type="int8", cpu_threads=T, num_workers=W)` on the same CTranslate2'
        " conversion of the checkpoint, greedy as speechmesh's default (beam_size=1,"
        ' temperature=0.0, language="en", no word timestamps, no VAD filter), in every'
        " configuration; and a plain transformers"
        ' `pipeline("automatic-speech-recognition", dtype=float32)`, what a naive FastAPI +'
        " pipeline server runs per request. Throughput in seconds of audio per wall second."
        " WER is each path's own, on the same clips: it can differ between paths that decode"
        " alike, since speechmesh's CTranslate2 engine packs the clips of a batch into shared"
        " 30 s windows (its transcripts depend on what they are batched with), and the pipeline"
        " decodes without timestamp tokens (the checkpoint's generation config)."
    )
    header = (
        "concurrent | requests per path (blocks) | speechmesh gRPC CTranslate2"
        " | best faster-whisper | CTranslate2 / faster-whisper"
        " | speechmesh gRPC transformers | CTranslate2 / transformers engine"
        " | transformers pipeline | CTranslate2 / pipeline | gRPC / direct"
    )
    rows = []
    for r in runs:
        best = r["faster_whisper_best"]
        q = r["ratios"]
        rows.append(
            [
                r["concurrency"],
                f"{r['grpc']['requests']} ({len(r['grpc']['blocks'])} × {r['grpc']['blocks'][0]})",
                fmt(r["grpc"]["audio_s_per_s"]),
                f"{fmt(r[best]['audio_s_per_s'])} ({_label(best)})" if best else "–",
                fmt(q.get("grpc_over_faster_whisper_best"), 3),
                fmt(r.get("transformers_grpc", {}).get("audio_s_per_s")),
                fmt(q.get("grpc_over_transformers_grpc"), 3),
                fmt(r.get("pipeline", {}).get("audio_s_per_s")),
                fmt(q.get("grpc_over_pipeline"), 3),
                fmt(q["grpc_over_direct"], 3),
            ]
        )
    ratios = table(header, rows)
    rows = []
    for r in runs:
        shown = [p for p in ("grpc", "direct", "transformers_grpc") if p in r["paths"]]
        for path in shown + [p for p in r["paths"] if p not in shown]:
            f = r[path]
            batches = f["batches"]
            rows.append(
                [
                    r["concurrency"],
                    _label(path) + (" (best)" if path == r["faster_whisper_best"] else ""),
                    fmt(f["audio_s_per_s"]),
                    fmt(f["requests_per_s"]),
                    fmt(f["latency_s"]["p50"]),
                    fmt(f["latency_s"]["p90"]),
                    fmt(f["rtf"]["p50"], 3),
                    fmt(batches["mean_batch_size"], 1) if batches else "–",
                    fmt(f["wer"], 3),
                    fmt(f["cpu"]["other_processes_cores"]),
                ]
            )
    header = (
        "concurrent | path | audio s/s | req/s | latency p50 s | latency p90 s | RTF p50"
        " | mean batch | WER | other processes, cores"
    )
    return section(
        "Unary Recognize: speechmesh and its peers",
        about,
        "Throughput (audio s/s), and speechmesh gRPC on CTranslate2 over each:",
        ratios,
        "Every path and configuration:",
        table(header, rows),
    )


def _raw_markdown(results: dict) -> list[str]:
    raw = results["raw_model"]
    s, b = raw["single"], raw["batch"]

    def row(name: str, r: dict) -> list[str]:
        passes = r["batches"]["forward_passes"]
        return [
            name,
            str(passes),
            fmt(r["batches"]["model_busy_s"] / passes, 3),
            fmt(r["wall_s"] / r["requests"], 3),
            fmt(r["audio_s_per_s"]),
            fmt(r["wer"], 3),
        ]

    lines = [
        f"Batch of {raw['batch_size']} over one clip at a time:"
        f" {raw['batch_speedup_over_single']:.2f}x throughput."
    ]
    by_c = {r["concurrency"]: r for r in results["unary"]["runs"]}
    if 1 in by_c:
        lines.append(
            f"1 unary gRPC call at a time: {by_c[1]['ratios']['grpc_over_raw']:.3f} of the raw"
            " model on one clip at a time."
        )
    if raw["batch_size"] in by_c:
        g = by_c[raw["batch_size"]]["grpc"]["audio_s_per_s"]
        lines.append(
            f"{raw['batch_size']} concurrent unary gRPC calls: {g / s['audio_s_per_s']:.2f}x"
            f" the raw model on one clip at a time, {g / b['audio_s_per_s']:.3f} of the raw"
            f" batch of {raw['batch_size']}."
        )
    return section(
        "Raw model (default engine's decode_batch, no batcher, no asyncio)",
        "The same requests' clips, measured interleaved with the unary runs at 1 and"
        f" {raw['batch_size']} callers.",
        table(
            "call | calls | s per call | s per clip | audio s/s | WER",
            [row("1 clip", s), row(f"batch of {raw['batch_size']}", b)],
        ),
        "\n".join(lines),
    )


def _streams_markdown(streams: dict) -> list[str]:
    about = (
        f"Each stream: a clip as LINEAR16 in {streams['chunk_s'] * 1000:.0f} ms chunks, each"
        " sent when a microphone would have captured it, then"
        f" {streams['trailing_silence_s']:g} s of silence and a half-close; interim results"
        f" every {streams['interim_interval_s']:g} s. End of speech = when the last chunk of"
        " the clip was sent; the final can come no sooner than the endpoint silence"
        f" ({streams['endpoint_silence_s']:g} s) later, so that is also shown subtracted."
        " Throughput = seconds of speech / wall seconds. WER of the finals (joined) against"
        " the manifest."
    )
    rows = []
    for r in streams["runs"]:
        g, d = r["grpc"], r["direct"]
        rows.append(
            [
                r["concurrency"],
                f"{g['completed']}/{g['streams']}",
                fmt(g["audio_s_per_s"]),
                fmt(d["audio_s_per_s"]),
                fmt(r["grpc_over_direct"], 3),
                fmt(g["end_of_speech_to_final_s"]["p50"]),
                fmt(g["end_of_speech_to_final_s"]["p90"]),
                fmt(g["end_of_speech_to_final_minus_endpoint_s"]["p50"]),
                fmt(d["end_of_speech_to_final_s"]["p50"]),
                fmt(g["first_interim_s"]["p50"]),
                fmt(g["first_interim_after_onset_s"]["p50"]),
                f"{fmt(g['wer'], 3)} / {fmt(d['wer'], 3)}",
            ]
        )
    header = (
        "streams | completed | gRPC audio s/s | direct audio s/s | gRPC / direct"
        " | end of speech → final p50 s | p90 s | p50 minus endpoint s | direct p50 s"
        " | first interim p50 s (from stream start) | (from speech onset)"
        " | WER of finals gRPC / direct"
    )
    return section(
        "StreamingRecognize (real-time streams, default engine)",
        about,
        table(header, rows),
        _other_load(streams["runs"], ("direct", "grpc")),
    )


def _memory_markdown(memory: dict) -> list[str]:
    blocks = []
    service = memory.get("service")
    if service:
        some = next((m for m in service.values() if "requests" in m), None)
        blocks.append(
            "The service alone, per engine: `speechmesh serve asr --engine X` as a child process;"
            " resident memory (VmRSS) once it answers SERVING (loaded and warmed up), then"
            + (
                f" {some['rounds']} round(s) of {some['concurrency']} concurrent Recognize calls;"
                if some
                else " concurrent Recognize calls;"
            )
            + " peak = VmHWM, the most it ever held resident (/proc/PID/status)."
        )
        rows = []
        for engine, m in service.items():
            if "error" in m:
                rows.append([engine, "–", "–", "–", "–", f"failed: {m['error']}", "–"])
                continue
            rows.append(
                [
                    engine,
                    fmt(m["start_to_serving_s"], 1),
                    fmt(m["rss_after_load_mib"], 0),
                    fmt(m["peak_rss_mib"], 0),
                    fmt(m["rss_after_requests_mib"], 0),
                    f"{m['requests']} ({len(m['errors'])} errors)",
                    fmt(m["wer"], 3),
                ]
            )
        header = (
            "engine | start → SERVING s | RSS after load MiB | peak RSS MiB"
            " | RSS after the calls MiB | calls | WER"
        )
        blocks.append(table(header, rows))
    p = memory["bench_process"]
    blocks.append(
        "This benchmark's own process (the services it measured, the peers and the client"
        f" together): peak RSS {p['peak_rss_mib']:.0f} MiB (after load"
        f" {p['rss_after_load_mib']:.0f} MiB)"
        + (
            f"; CUDA peak allocated {p['cuda_max_allocated_mib']:.0f} MiB,"
            f" reserved {p['cuda_max_reserved_mib']:.0f} MiB"
            if "cuda_max_allocated_mib" in p
            else ""
        )
        + "."
    )
    return section("Memory", *blocks)


def _other_load(runs: list[dict], paths: tuple[str, ...]) -> str:
    """How busy the machine was with other work while a section ran (noise in its figures)."""
    per_run = []
    for r in runs:
        cores = [r[p]["cpu"]["other_processes_cores"] for p in paths]
        if None in cores:
            return ""
        per_run.append(f"{r['concurrency']}: " + " / ".join(f"{c:.2f}" for c in cores))
    return (
        f"Other processes on the machine meanwhile, in cores busy ({' / '.join(paths)}) at each"
        " concurrency: " + "; ".join(per_run) + "."
    )


def main(argv: list[str] | None = None) -> int:
    return report.rerender("asr", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
