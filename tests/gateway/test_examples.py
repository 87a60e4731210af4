"""The examples of the documentation, run as written against `speechmesh up --offline`.

Every block marked `<!-- example: NAME -->` in README.md, docs/*.md and examples/README.md runs
in a scratch folder that mirrors the repository root (links to examples/, protos/, third_party/
and buf.yaml, so the commands' relative paths hold and the files they write land in the scratch
folder): a ```sh block with `bash -euo pipefail`, a ```python block with this interpreter. The
environment has SPEECHMESH set to the gateway and AUDIO to examples/hello.wav (the committed
clip the pages use), and `localhost:8080`, the address the pages write, is replaced by the test
gateway's. Every example has a check below that reads what it printed and wrote; an example
without one fails, so the pages and the tests cannot drift apart. The models are tiny random
checkpoints: checks look at codes, shapes, audio and protocol, not words.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import ROOT

#: The pages whose marked blocks run, README first.
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "examples" / "README.md",
]
NODE_DIR = ROOT / "examples" / "node"
BLOCK = re.compile(r"<!-- example: ([\w-]+) -->\n```(sh|python)\n(.*?)\n```", re.S)
#: The recording every page uses: 5.8 s of espeak-ng speech, 16 kHz mono.
CLIP = ROOT / "examples" / "hello.wav"
#: The gateway address the pages write, replaced by the test gateway's.
PAGE_GATEWAY = "localhost:8080"
GO_PLUGINS = ("protoc-gen-go", "protoc-gen-go-grpc")


class Example(str):
    """A block's text, with its language (`sh` or `python`) and the page it is on."""

    language: str
    page: pathlib.Path


def examples() -> dict[str, Example]:
    found: dict[str, Example] = {}
    for page in PAGES:
        for name, language, script in BLOCK.findall(page.read_text()):
            assert name not in found, f"two examples named {name} ({found[name].page}, {page})"
            example = Example(script)
            example.language, example.page = language, page
            found[name] = example
    return found


@pytest.fixture(scope="module")
def audio() -> tuple[pathlib.Path, bool]:
    """The recording the examples use, and whether it is speech (it is)."""
    assert CLIP.is_file(), "examples/hello.wav is committed with the pages"
    return CLIP, True


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("examples-root")
    for name in ("examples", "protos", "third_party", "buf.yaml"):
        (folder / name).symlink_to(ROOT / name)
    return folder


class Runner:
    def __init__(self, up, workdir: pathlib.Path, audio: pathlib.Path):
        self.workdir = workdir
        self.gateway = up.gateway.target
        self.env = dict(os.environ)
        bin_dir = str(pathlib.Path(sys.executable).parent)  # grpcurl and buf from the venv
        self.env.update(
            PATH=f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}",
            SPEECHMESH=up.gateway.target,
            AUDIO=str(audio),
        )

    def run(self, name: str, script: str | None = None, timeout: float = 120) -> str:
        example = examples()[name]
        script = (script if script is not None else example).replace(PAGE_GATEWAY, self.gateway)
        if example.language == "python":
            command = [sys.executable, "-c", script]
        else:
            command = ["bash", "-euo", "pipefail", "-c", script]
        done = subprocess.run(
            command,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (
            f"example {name} failed ({done.returncode}):\n{script}\n"
            f"-- stdout:\n{done.stdout[-3000:]}\n-- stderr:\n{done.stderr[-3000:]}"
        )
        return done.stdout


@pytest.fixture(scope="module")
def runner(up, workdir, audio) -> Runner:
    return Runner(up, workdir, audio[0])


def need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def node_modules(runner) -> None:
    """examples/node/node_modules from the lockfile, by the page's own `npm ci` block when it is
    missing or older than package-lock.json."""
    need("node", "npm")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    runner.run("node-install", timeout=300)


@pytest.fixture(scope="module")
def generated(runner, node_modules) -> str:
    """The page's `buf generate` block; without the Go plugins, with the TypeScript plugin
    only (the same template less its Go entries)."""
    script = examples()["buf-generate"]
    if all(shutil.which(plugin) for plugin in GO_PLUGINS):
        return runner.run("buf-generate", script)
    template = yaml.safe_load((ROOT / "examples" / "buf.gen.yaml").read_text())
    template["plugins"] = [p for p in template["plugins"] if p["local"] not in GO_PLUGINS]
    ts_only = runner.workdir / "buf.gen.ts-only.yaml"
    ts_only.write_text(yaml.safe_dump(template))
    (ROOT / "examples" / "gen").mkdir(exist_ok=True)  # the listing names it
    return runner.run("buf-generate", script.replace("examples/buf.gen.yaml", ts_only.name))


# -- reading outputs ---------------------------------------------------------------------------


def json_values(text: str) -> list:
    """Consecutive JSON values, as grpcurl and buf curl print them (pretty or one a line)."""
    decoder = json.JSONDecoder()
    values, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)


def pick(message: dict, snake: str):
    """A field by its proto name or its lowerCamelCase JSON name."""
    camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), snake)
    return message.get(snake, message.get(camel))


def wav_seconds(path: pathlib.Path) -> float:
    return sf.info(path).duration


def duration_s(text: str) -> float:
    assert text.endswith("s"), text
    return float(text[:-1])


def decoded(path: pathlib.Path) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(path.read_bytes()))
    assert rate > 0 and len(samples) > 0
    return samples, rate


# -- the examples ------------------------------------------------------------------------------


def check_grpcurl_list(runner, audio, out) -> None:
    lines = out.splitlines()
    assert "speechmesh.tts.v1.TtsService" in lines
    assert "grpc.health.v1.Health" in lines
    assert "message SynthesizeRequest {" in out
    assert re.search(r"string text = \d+", out), out


def check_grpcurl_recognize(runner, audio, out) -> None:
    (reply,) = json_values(out)
    assert pick(reply, "language_code") == "en"
    assert duration_s(pick(reply, "audio_duration")) == pytest.approx(wav_seconds(audio[0]), 0.01)
    assert isinstance(reply.get("transcript", ""), str)


def check_grpcurl_stream(runner, audio, out) -> None:
    responses = json_values(out)
    events = [pick(r, "speech_event")["type"] for r in responses if pick(r, "speech_event")]
    assert events[:2] == ["TYPE_SPEECH_BEGIN", "TYPE_SPEECH_END"]
    finals = [r["result"] for r in responses if "result" in r and pick(r["result"], "is_final")]
    assert len(finals) == 1
    assert 0.2 <= duration_s(pick(finals[0], "start_offset")) <= 0.6  # 0.3 s of silence first


def check_grpcurl_synthesize(runner, audio, out) -> None:
    (summary,) = json_values(out)
    assert summary["seed"] == "7"
    assert len(summary["sentences"]) == 2
    samples, rate = decoded(runner.workdir / "speech.wav")
    assert rate == summary["sample_rate_hertz"]
    assert len(samples) / rate == pytest.approx(duration_s(summary["audio_duration"]), abs=0.01)


def check_grpcurl_health(runner, audio, out) -> None:
    assert [v["status"] for v in json_values(out)] == ["SERVING"] * 3


def check_buf_curl_list(runner, audio, out) -> None:
    methods = out.splitlines()
    assert "speechmesh.translate.v1.TranslateService/TranslateText" in methods
    assert "speechmesh.translate.v1.TranslateService/StreamingTranslateSpeech" in methods


def check_buf_curl_unary(runner, audio, out) -> None:
    (reply,) = json_values(out)
    translations = reply["translations"]
    assert len(translations) == 2
    assert all(t["sourceLanguageCode"] == "en" for t in translations)


def check_buf_curl_stream(runner, audio, out) -> None:
    messages = json_values(out)
    *chunks, summary = messages
    assert summary["sentenceCount"] == 2
    assert summary["seed"] == "7"
    assert [c["text"] for c in chunks if c.get("text")] == ["Hello there.", "How are you today?"]
    assert sum(1 for c in chunks if c.get("sentenceEnd")) == 2
    assert all(c["sampleRateHertz"] == summary["sampleRateHertz"] for c in chunks)


def check_buf_curl_schema(runner, audio, out) -> None:
    models = json_values(out)
    assert models and models[0]["engine"] == "csm"
    assert models[0]["voiceCloning"] is True


def check_rest_json(runner, audio, out) -> None:
    *models, translated = json_values(out)
    assert models[0]["state"] == "MODEL_STATE_READY"
    assert len(translated["translations"]) == 2
    assert translated["translations"][0]["source_language_code"] == "en"


def transcribed(audio, out) -> dict:
    """The example's one JSON reply, a transcription of the first recording: its
    audio_duration is that recording's length."""
    (reply,) = json_values(out)
    assert duration_s(reply["audio_duration"]) == pytest.approx(wav_seconds(audio[0]), 0.01)
    return reply


def check_rest_upload(runner, audio, out) -> None:
    reply = transcribed(audio, out)
    assert reply["request_id"] == "upload-1"
    assert reply["language_code"] == "en"


def check_rest_base64(runner, audio, out) -> None:
    reply = transcribed(audio, out)
    assert isinstance(reply["transcript"], str)


def check_rest_download(runner, audio, out) -> None:
    flac, speech = out.splitlines()
    assert flac == "200 audio/flac"
    _, rate = decoded(runner.workdir / "hello.flac")
    assert rate == 16000
    assert (runner.workdir / "hello.flac").read_bytes()[:4] == b"fLaC"
    assert speech == "200 audio/wav"
    decoded(runner.workdir / "speech-fr.wav")


def check_rest_sse(runner, audio, out) -> None:
    lines = [line for line in out.splitlines() if line]
    assert lines and all(line.startswith("data: ") for line in lines), out
    events = [json.loads(line.removeprefix("data: ")) for line in lines]
    kinds = [e["speech_event"]["type"] for e in events if "speech_event" in e]
    assert kinds[:2] == ["TYPE_SPEECH_BEGIN", "TYPE_SPEECH_END"]
    assert any(e["result"]["is_final"] for e in events if "result" in e)


def check_rest_error(runner, audio, out) -> None:
    body, status = out.strip().splitlines()
    assert status == "HTTP 400"
    error = json.loads(body)
    assert error["code"] == 3
    violation = error["details"][0]["field_violations"][0]
    assert violation["field"] == "target_language_code"


def check_node_install(runner, audio, out) -> None:
    for package in ("@grpc/grpc-js", "@grpc/proto-loader", "@bufbuild/protoc-gen-es"):
        assert (NODE_DIR / "node_modules" / package / "package.json").is_file()


def check_node_stream(runner, audio, out) -> None:
    lines = out.splitlines()
    assert re.fullmatch(r" *[\d.]+ done: \d+ final result\(s\)", lines[-1]), out
    assert re.match(r" *[\d.]+ speech begins at 0\.[2-6]\d* s$", lines[0]), out
    assert any(" FINAL " in line for line in lines)
    assert lines[-1].endswith("done: 1 final result(s)")


def check_buf_generate(runner, audio, out) -> None:
    listed = set(out.split())
    for area in ("asr", "translate", "tts", "audio"):
        assert f"examples/node/gen/speechmesh/{area}/v1/{area}_pb.ts" in listed
    assert "examples/node/gen/google/api/httpbody_pb.ts" in listed
    if all(shutil.which(plugin) for plugin in GO_PLUGINS):
        assert "examples/gen/go/speechmesh/asr/v1/asr.pb.go" in listed
        assert "examples/gen/go/speechmesh/asr/v1/asr_grpc.pb.go" in listed
    ts = (NODE_DIR / "gen" / "speechmesh" / "asr" / "v1" / "asr_pb.ts").read_text()
    assert "export const AsrService: GenService<" in ts
    assert "export type StreamingRecognizeRequest = Message<" in ts


def check_ts_translate(runner, audio, out) -> None:
    first, *rest = out.splitlines()
    assert re.fullmatch(r"ts-\d+: 2 translation\(s\) by .+", first), out
    assert [line.split(" -> ")[0] for line in rest] == ["Hello.", "How are you?"]
    assert all(" -> [fr] " in line for line in rest)


def check_translate_cascade(runner, audio, out) -> None:
    first, *segments = json_values(out)
    assert first["path"] == "SPEECH_TRANSLATION_PATH_CASCADE", out
    models = first["cascade_models"]
    assert models["recognition_model"] and models["synthesis_model"], out
    previous = 0.0
    for segment in segments:  # none when the tiny Whisper hears nothing
        start = duration_s(segment["start_offset"])
        assert start <= duration_s(segment["end_offset"]) <= wav_seconds(audio[0]) + 0.01
        placed = duration_s(segment["translated_audio_start_offset"])
        assert placed >= max(start, previous) - 0.01, out  # the source's timeline
        previous = placed
        voice = segment["voice"]
        if voice is None:  # nothing to say (an empty translation)
            continue
        if voice["kind"] == "KIND_SPEAKER":
            reference = (
                duration_s(voice["reference_start_offset"]),
                duration_s(voice["reference_end_offset"]),
            )
            assert reference[1] - reference[0] >= 3.0 - 0.01, out
        else:
            # The speaker's voice was asked: a preset speaks only with the reason why.
            assert voice["kind"] == "KIND_PRESET" and voice["fallback_reason"], out


# -- the README's examples, one per face --------------------------------------------------------


def check_readme_grpcurl(runner, audio, out) -> None:
    reply = transcribed(audio, out)
    assert set(reply) == {"transcript", "language_code", "audio_duration"}
    assert reply["language_code"] == "en"


def check_readme_curl(runner, audio, out) -> None:
    reply = transcribed(audio, out)
    assert isinstance(reply["transcript"], str)


def check_readme_python(runner, audio, out) -> None:
    *_, words = out.splitlines()  # the transcript (noise here) may span lines; the words do not
    assert words.startswith("[") and words.endswith("]"), out


def check_readme_openai(runner, audio, out) -> None:
    assert out.endswith("\n"), out  # one transcript printed; its words are noise here


def check_readme_realtime(runner, audio, out) -> None:
    """The plain WebSocket client through the gateway's /v1/realtime: the session at the clip's
    16 kHz, one turn begun after its 0.3 s of silence and ended within it, and each completed
    turn placed inside the clip (its words are noise here)."""
    lines = out.splitlines()
    assert re.fullmatch(r"session    16000 Hz, model \S+", lines[0]), out
    assert {line.split(" ", 1)[0] for line in lines[1:]} <= {"speech", "delta", "completed"}, out
    times = [
        (kind, float(at))
        for kind, at in re.findall(r"^speech     (started|stopped) at (\d+\.\d\d) s$", out, re.M)
    ]
    assert times[0][0] == "started" and 0.2 <= times[0][1] <= 0.6, out
    assert times[1][0] == "stopped" and times[0][1] < times[1][1] <= wav_seconds(audio[0]), out
    completed = re.findall(r"^completed  .*  \[\S+, (\d+\.\d\d)-(\d+\.\d\d) s\]$", out, re.M)
    assert completed, out
    for start, end in completed:
        assert 0 <= float(start) <= float(end) <= wav_seconds(audio[0]) + 0.01, out


def check_readme_jobs(runner, audio, out) -> None:
    state, header, *cues = out.splitlines()
    assert state == "OPERATION_STATE_SUCCEEDED" and header == "WEBVTT", out
    assert not cues or " --> " in cues[1], out


def check_readme_cascade(runner, audio, out) -> None:
    assert out == "200 audio/wav\n", out
    samples, rate = decoded(runner.workdir / "hello-en.wav")
    # Laid on the source's timeline: at least as long as the recording.
    assert len(samples) / rate >= wav_seconds(audio[0]) - 0.01


def check_jobs_curl(runner, audio, out) -> None:
    state, *srt = out.splitlines()
    assert json.loads(state) == {
        "done": True,
        "state": "OPERATION_STATE_SUCCEEDED",
        "progress": 100,
    }, out
    assert not srt or (srt[0] == "1" and " --> " in srt[1]), out  # no cue when nothing is heard


def check_jobs_grpcurl(runner, audio, out) -> None:
    reply = json.loads(out)
    assert reply["done"] is True and reply["state"] == "OPERATION_STATE_SUCCEEDED", out
    assert isinstance(reply["transcript"], str)


def check_jobs_python(runner, audio, out) -> None:
    # The state and progress, the transcript (noise here, maybe over lines), the first cue.
    assert out.startswith("SUCCEEDED 100.0 "), out
    assert " --> " in out.splitlines()[-1], out


def check_jobs_cli(runner, audio, out) -> None:
    assert out == "" or (out.startswith("1\n") and " --> " in out), out


def check_jobs_tts(runner, audio, out) -> None:
    assert out.strip() == "3", out  # three sentences spoken
    samples, rate = decoded(runner.workdir / "chapter.wav")
    assert rate > 0 and len(samples) > 0


CHECKS = {
    name.removeprefix("check_").replace("_", "-"): check
    for name, check in dict(globals()).items()
    if name.startswith("check_")
}
#: Fixtures an example needs beyond the runner; tools it needs besides bash and the venv's.
NEEDS = {
    "node-install": ["node_modules"],
    "node-stream": ["node_modules"],
    "buf-generate": ["generated"],
    "ts-translate": ["generated"],
}
TOOLS = {"curl": ["curl"], "jq": ["jq"], "node": ["node"]}
#: Python packages an example imports that the tests may lack.
MODULES = ("openai",)


def test_every_example_has_a_check():
    assert set(examples()) == set(CHECKS)


@pytest.mark.parametrize("name", list(examples()))
def test_example_runs_as_written(name, request, runner, audio):
    script = examples()[name]
    need(
        *(
            tool
            for word, tools in TOOLS.items()
            if re.search(rf"\b{word}\b", script)
            for tool in tools
        )
    )
    for module in MODULES:
        imported = re.search(rf"^from {module} import|^import {module}\b", script, re.M)
        assert not imported or importlib.util.find_spec(module) is not None, (
            f"the {module} package is not installed: make install adds it (the dev extra)"
        )
    for fixture in NEEDS.get(name, []):
        request.getfixturevalue(fixture)
    if name == "node-install":
        out = ""  # ran (when needed) by the node_modules fixture
    elif name == "buf-generate":
        out = request.getfixturevalue("generated")
    else:
        out = runner.run(name)
    CHECKS[name](runner, audio, out)
