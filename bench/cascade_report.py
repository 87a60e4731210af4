"""The cascade benchmark's targets and Markdown report, from its results alone.

    python -m bench.cascade_report [bench/results/cascade.json] [--out PATH | -] [--check]

`targets(results)` judges the figures bench.cascade measured; `markdown(results)` renders them
as the tables of NAME.md. Nothing here measures anything.
"""

from __future__ import annotations

import sys

from bench import report
from bench.report import fmt, section, table, target

#: A clip's cascade latency / the sum of its three services' own latencies on it (median).
OVERHEAD_TARGET = 1.1
STAGE_TITLES = {"recognize": "ASR", "translate": "text", "synthesize": "TTS"}


def targets(results: dict) -> list[dict]:
    out = []
    for r in results.get("overhead", {}).get("runs", []):
        out.append(
            target(
                f"cascade_over_direct_sum_{r['way']}",
                f"cascade / sum of the three services called directly, per clip (median),"
                f" {r['way']} ({_way(r)})",
                r["ratio"]["p50"],
                "<=",
                OVERHEAD_TARGET,
                # The same texts must reach TTS on both paths, or the sum measures other work.
                valid=bool(r["same_texts"]),
            )
        )
    return out


def headline(results: dict) -> dict:
    out = {
        f"cascade_over_direct_sum_{r['way']}": r["ratio"]["p50"]
        for r in results.get("overhead", {}).get("runs", [])
    }
    for r in results.get("rtf", {}).get("runs", []):
        out[f"rtf_wall_over_audio_x{r['concurrency']}"] = r["wall_over_audio"]
    return out


def _way(r: dict) -> str:
    voice = r["voice"] if r["voice"].startswith("the") else f"preset {r['voice']!r}"
    return f"en -> {r['target_language']}, TTS {r['synthesis_model']}, {voice}"


def markdown(results: dict) -> str:
    env = results["environment"]
    clips = results["clips"]
    models = results["models"]
    lines = [
        "# Cascade speech-to-speech benchmark",
        "",
        f"{env['cpu_count']} CPUs ({env['cpu_model']}), no GPU; torch {env['torch']}"
        f" ({env['torch_threads_per_service']} threads per service); the ASR, TTS and translate"
        f" services as child processes with their default settings, this process the client;"
        f" {env['date']}, {report.commit(env)}; {results['duration_s']:.0f} s. Load average at"
        f" start / end: {report.load_averages(env)}.",
        "",
        f"Models: ASR {_name(models['asr'])} and TTS {_name(models['tts_real_voice'])} (real"
        " weights, ../shared/models); the translate service's text model is a tiny random NLLB"
        " (no real translation weights are available here), and the TTS service also serves a"
        " tiny random French VITS (to speak the NLLB's output) and a tiny random CSM (the one"
        " model that clones a voice). Clips: the"
        f" {len(clips['files'])} LibriVox recordings of {clips['folder']}"
        f" ({clips['total_s']:.1f} s of real English speech, one reader).",
        "",
    ]
    lines += report.parts(results, overhead=_overhead_markdown, rtf=_rtf_markdown)
    cores = [
        r.get("other_processes_cores") or 0.0
        for part in ("overhead", "rtf")
        for r in results.get(part, {}).get("runs", [])
    ]
    if cores and max(cores) >= 0.2:
        lines += [
            f"**Disturbed run**: other processes (other engineers' tests on this machine) kept"
            f" up to {max(cores):.2f} of {env['cpu_count']} cores busy during some"
            " measurements; absolute times are slower and noisier than the machine's own. The"
            " overhead ratios pair calls made back to back on the same clip, so load falls on"
            " both paths alike.",
            "",
        ]
    lines += ["## Targets", "", *report.target_lines(results["targets"])]
    return "\n".join(lines) + "\n"


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _overhead_markdown(overhead: dict) -> list[str]:
    runs = overhead["runs"]
    rows = [
        [
            r["way"],
            _way(r),
            r["pairs"],
            fmt(r["segments_per_clip"]["mean"], 1),
            f"{fmt(r['cascade_latency_s']['p50'], 3)} / {fmt(r['cascade_latency_s']['p90'], 3)}",
            f"{fmt(r['direct_sum_latency_s']['p50'], 3)} /"
            f" {fmt(r['direct_sum_latency_s']['p90'], 3)}",
            f"{fmt(r['ratio']['p50'], 3)} / {fmt(r['ratio']['p90'], 3)}",
            f"{fmt(r['ratio_of_p50'], 3)} / {fmt(r['ratio_of_p90'], 3)}",
            fmt(r["overhead_s"]["p50"], 3),
            "yes" if r["same_texts"] else "**no**",
            fmt(r["other_processes_cores"]),
        ]
        for r in runs
    ]
    header = (
        "way | what | clip calls | segments/clip | cascade p50 / p90 s | direct sum p50 / p90 s"
        " | cascade/sum per clip p50 / p90 | p50/p50, p90/p90 | overhead p50 s | same texts"
        " | other cores"
    )
    stage_rows = []
    for r in runs:
        for s, title in STAGE_TITLES.items():
            c = r["stages_s"]["cascade"].get(s)
            d = r["stages_s"]["direct"].get(s)
            if c is None and d is None:
                continue
            stage_rows.append(
                [
                    r["way"],
                    title,
                    fmt((c or {}).get("p50"), 3),
                    fmt((d or {}).get("p50"), 3),
                ]
            )
        outside = fmt(r["cascade_outside_stages_s"]["p50"], 3)
        stage_rows.append([r["way"], "cascade outside its stages", outside, "–"])
    clip_rows = [
        [
            r["way"],
            c["clip"],
            fmt(c["clip_s"], 2),
            c["segments"],
            fmt(c["cascade_p50_s"], 3),
            fmt(c["direct_sum_p50_s"], 3),
            fmt(c["ratio_of_p50"], 3),
        ]
        for r in runs
        for c in r["by_clip"]
    ]
    rounds = ", ".join(f"{k} {v}" for k, v in overhead["rounds"].items())
    return section(
        "Cascade overhead (TranslateSpeech, path CASCADE, vs the three services called directly)",
        "Each clip, one call at a time: TranslateSpeech on the cascade path, and this process"
        " calling ASR Recognize (the clip as 16 kHz WAV, as the cascade sends it), TranslateText"
        " of the segments' texts (translated only) and TTS Synthesize of every segment's text"
        " (all at once, as the cascade does) with the same model and voice, back to back in"
        " alternating order. 'direct sum' is the sum of those calls' latencies (the references"
        " of the cloned way are chosen before the TTS call is timed). Rounds over the clips:"
        f" {rounds}, after one warm-up call on each path. 'same texts': both paths sent TTS the"
        " same texts (a target counts only then).",
        table(header, rows),
        "Stage times (p50 s): the cascade's own, from the translate service's"
        " speechmesh_cascade_stage_seconds histogram (read around each call), against the"
        " direct calls'; 'outside its stages' is the rest of the cascade's call (decoding,"
        " planning with the peers' model lists, speaker references, layout, reply).",
        table("way | stage | cascade p50 s | direct p50 s", stage_rows),
        table(
            "way | clip | seconds | segments | cascade p50 s | direct sum p50 s | ratio",
            clip_rows,
        ),
    )


def _rtf_markdown(rtf: dict) -> list[str]:
    rows = [
        [
            r["concurrency"],
            r["files"],
            fmt(r["audio_s"], 1),
            fmt(r["wall_s"], 2),
            fmt(r["wall_over_audio"], 3),
            fmt(r["audio_s_per_s"], 2),
            f"{fmt(r['rtf']['p50'], 3)} / {fmt(r['rtf']['p90'], 3)}",
            f"{fmt(r['latency_s']['p50'], 2)} / {fmt(r['latency_s']['p90'], 2)}",
            len(r["errors"]),
            fmt(r["other_processes_cores"]),
        ]
        for r in rtf["runs"]
    ]
    return section(
        "Speech-to-speech real-time factor through the cascade",
        f"English to English, re-voiced by {rtf['synthesis_model']} (real weights, preset"
        " 'default'), recognized by the real ASR model: files sent by N concurrent callers, each"
        " sending its next LibriVox clip when the last returns. 'wall / audio' is the run's wall"
        " time over the audio seconds it translated (1 / throughput); a file's RTF is its"
        " latency over its own seconds.",
        table(
            "files at once | files | audio s | wall s | wall / audio | audio s per s"
            " | file RTF p50 / p90 | latency p50 / p90 s | errors | other cores",
            rows,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    return report.rerender("cascade", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
