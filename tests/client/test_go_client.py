"""The Go client (examples/go, `speechmesh-go`), compiled and run against a real gateway.

It is built by the commands of examples/README.md's Go section as written (the block marked
`<!-- go-example: build -->`): `buf generate --template examples/go/buf.gen.yaml` writes the
Go stubs into a GOPATH tree and Debian's Go compiles them with the client, against Debian's
grpc-go, protobuf-go and genproto in /usr/share/gocode, offline. That runs once per session in
a scratch folder that mirrors the repository root, so nothing lands in the checkout; Go's
build cache is kept in ~/.cache/speechmesh-tests/go, so later sessions rebuild in seconds.

The client then talks to the client suite's gateway (a real Envoy before the services running
in-process; ASR serves whisper-tiny.en when ../shared has it, whose transcripts are checked
word for word), and to an Envoy of its own with API keys and TLS. Without Go or Debian's
packages the tests skip and say what to install; .ci/run installs them.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.client.conftest import GOFORWARD, JFK, LIBRIVOX, REAL
from tests.conftest import ROOT
from tests.servers import free_port

GOCODE = pathlib.Path("/usr/share/gocode/src")
GOLANG_PROTOBUF = GOCODE / "github.com" / "golang" / "protobuf"
#: What the build needs: a command on PATH, or a file a Debian package installs.
NEEDS = {
    "golang-go": "go",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
    "golang-google-grpc-dev": GOCODE / "google.golang.org/grpc/clientconn.go",
    "golang-google-protobuf-dev": GOCODE / "google.golang.org/protobuf/proto/encode.go",
    "golang-google-genproto-dev": GOCODE / "google.golang.org/genproto/googleapis/rpc/status",
    # golang/protobuf 1.5 (APIv2 underneath) has proto/registry.go; 1.3 compiles the client but
    # cannot marshal protoc-gen-go 1.28's messages (examples/go/README.md).
    "golang-github-golang-protobuf-1-5-dev": GOLANG_PROTOBUF / "proto" / "registry.go",
}
GO_CACHE = pathlib.Path.home() / ".cache" / "speechmesh-tests" / "go"
README = ROOT / "examples" / "README.md"
BLOCK = re.compile(r"<!-- go-example: ([\w-]+) -->\n```sh\n(.*?)\n```", re.S)
#: The clip examples/README.md's blocks run on (espeak-ng, 5.8 s), and what they print.
HELLO = "Hello and welcome. This is a short test for speech recognition."
STREAM_CLIP = LIBRIVOX[0] if LIBRIVOX else ROOT / "examples" / "hello.wav"  # time for interims
#: The stream's final line: seconds since the start, the utterance's times, text, language.
FINAL = re.compile(r" *([\d.]+) FINAL    ([\d.]+)-([\d.]+) s  (.*) \[(\w*)\]$")
INTERIM = re.compile(r" *([\d.]+) interim  \[(.*?)\] (.*)$")


def words_of(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def blocks() -> dict[str, str]:
    return dict(BLOCK.findall(README.read_text()))


def missing_packages() -> list[str]:
    missing = []
    for package, need in NEEDS.items():
        found = shutil.which(need) if isinstance(need, str) else need.exists()
        if not found:
            missing.append(package)
    return missing


MISSING = missing_packages()
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason="the Go client needs Debian's Go toolchain and packages: apt-get install "
    f"--no-install-recommends {' '.join(MISSING)} (.ci/run installs them)",
)


class Go:
    """The scratch root the README's blocks run in, and `speechmesh-go` built there."""

    def __init__(self, workdir: pathlib.Path, gateway: str):
        self.workdir = workdir
        self.env = dict(os.environ)
        self.env.update(
            PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}",
            GOCACHE=str(GO_CACHE),
            GOFLAGS="",  # a user's -mod=... would stop GOPATH mode
            SPEECHMESH=gateway,
            AUDIO="examples/hello.wav",
            SPEECHMESH_API_KEY="",
        )
        self.binary = workdir / "build" / "go" / "bin" / "speechmesh-go"

    def block(self, name: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A README block as written, in bash -euo pipefail; standard error folded into the
        output, as a terminal shows both."""
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", blocks()[name]],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )

    def __call__(
        self, *args: str, key: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """speechmesh-go ARGS, with `key` in $SPEECHMESH_API_KEY."""
        return subprocess.run(
            [str(self.binary), *args],
            cwd=self.workdir,
            env=dict(self.env, SPEECHMESH_API_KEY=key),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def go(tmp_path_factory, suite) -> Go:
    """speechmesh-go, built once per session by the README's build block."""
    workdir = tmp_path_factory.mktemp("go-client")
    for name in ("examples", "protos", "third_party", "buf.yaml"):
        (workdir / name).symlink_to(ROOT / name)
    GO_CACHE.mkdir(parents=True, exist_ok=True)
    go = Go(workdir, suite.gateway)
    built = go.block("build", timeout=240)  # cold: 15-25 s on two cores; warm: 2-3 s
    assert built.returncode == 0, f"the README's Go build failed:\n{built.stdout[-4000:]}"
    assert go.binary.is_file()
    return go


# -- the README's blocks ---------------------------------------------------------------------


def test_readme_recognize(go):
    ran = go.block("recognize")
    assert ran.returncode == 0, ran.stdout
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("transcript  ")
    assert re.fullmatch(r"language    \w+ \(probability [\d.]+\)", lines[1]), lines[1]
    assert re.fullmatch(r"audio       5\.8\d s, model .+", lines[2]), lines[2]
    if REAL:  # (a random checkpoint's text may hold anything, line breaks too)
        segments = [line for line in lines if line.startswith("segment ")]
        words = [line for line in lines if line.startswith("  word ")]
        assert segments and lines.index(segments[0]) == 3
        assert lines[0] == f"transcript  {HELLO}"
        assert lines[1].startswith("language    en ")
        assert [w.split()[-1] for w in words][:3] == ["Hello", "and", "welcome."]
        shown = README.read_text().split("<!-- go-example: recognize -->")[1]
        assert "\n".join(lines[:5]) in shown  # the page shows what the client prints


def test_readme_stream(go):
    ran = go.block("stream")
    assert ran.returncode == 0, ran.stdout
    lines = ran.stdout.splitlines()
    assert re.fullmatch(r" *[\d.]+ speech begins at 0\.[2-6]\d* s", lines[0]), ran.stdout
    assert re.fullmatch(r" *[\d.]+ done: 1 final result\(s\)", lines[-1]), ran.stdout
    finals = [FINAL.match(line) for line in lines if " FINAL " in line]
    assert len(finals) == 1 and finals[0], ran.stdout
    if REAL:
        assert finals[0].group(4) == HELLO and finals[0].group(5) == "en"


def test_readme_error(go):
    ran = go.block("error")
    assert ran.returncode == 0  # `|| echo "exit status $?"`
    assert ran.stdout.splitlines()[0].startswith(
        "speechmesh-go: NOT_FOUND (5): model 'whisper-huge' is not served here"
    ), ran.stdout
    assert '  resource model "whisper-huge"' in ran.stdout
    assert ran.stdout.endswith("exit status 1\n")


# -- recordings from ../shared -----------------------------------------------------------------


def test_recognize_prints_transcript_language_and_times(go):
    clip = JFK if REAL else ROOT / "examples" / "hello.wav"  # FLAC, stereo, 44.1 kHz
    ran = go("recognize", "-words", "-language", "en", str(clip))
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    lines = ran.stdout.splitlines()
    transcript = lines[0].removeprefix("transcript  ")
    assert lines[1].startswith("language    en (probability ")
    assert lines[2].startswith("audio       11.00 s" if REAL else "audio       5.8")
    if not REAL:
        return  # a random checkpoint's text may hold anything, line breaks too
    # Segments in order, each followed by its words, inside its times.
    segments: list[tuple[float, float, str]] = []
    words: list[str] = []
    for line in lines[3:]:
        match = re.fullmatch(r"(segment|  word)  +([\d.]+)-([\d.]+) s  (.*)", line)
        assert match, line
        start, end = float(match.group(2)), float(match.group(3))
        assert 0 <= start <= end <= 11.1, line
        if match.group(1) == "segment":
            assert not segments or segments[-1][0] <= start, line
            segments.append((start, end, match.group(4)))
        else:
            assert segments and segments[-1][0] - 0.05 <= start <= end <= segments[-1][1] + 0.05
            words.append(match.group(4))
    assert segments
    assert {"americans", "ask", "country"} <= set(words_of(transcript))
    assert words_of(" ".join(text for *_, text in segments)) == words_of(transcript)
    assert words_of(" ".join(words)) == words_of(transcript)


def test_stream_prints_interim_results_while_sending_then_the_final(go):
    ran = go("stream", str(STREAM_CLIP), timeout=180)  # paced: 100 ms every 100 ms
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    interims = [INTERIM.match(line) for line in lines if " interim " in line]
    finals = [FINAL.match(line) for line in lines if " FINAL " in line]
    assert all(interims) and len(finals) == 1 and finals[0], ran.stdout
    final = finals[0]
    at = [float(line.split()[0]) for line in lines]
    assert at == sorted(at)  # printed as they came
    assert 0 <= float(final.group(2)) < float(final.group(3)) <= 7.2
    if REAL:
        assert len(interims) >= 2, ran.stdout
        # Hypotheses came while the audio was still being sent, in real time: the first well
        # before the clip's 7 s were all up.
        assert float(interims[0].group(1)) < 5.0, ran.stdout
        assert lines.index(interims[-1].group(0)) < lines.index(final.group(0))
        assert {"john", "dashwood", "prudently"} <= set(words_of(final.group(4)))
        assert final.group(5) == "en"
        # Each interim's stable prefix is the start of its own hypothesis.
        for match in interims:
            assert words_of(match.group(3))[: len(words_of(match.group(2)))] == words_of(
                match.group(2)
            )


def test_stream_fast_sends_at_once(go):
    ran = go("stream", "-fast", str(GOFORWARD if REAL else ROOT / "examples" / "hello.wav"))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1].endswith("done: 1 final result(s)")
    if REAL:
        final = next(FINAL.match(line) for line in ran.stdout.splitlines() if " FINAL " in line)
        assert {"go", "forward", "meters"} <= set(words_of(final.group(4)))  # "ten" or "10"


def test_models_lists_the_served_model(go):
    ran = go("models")
    assert ran.returncode == 0, ran.stderr
    rows = [line.split() for line in ran.stdout.splitlines()]
    assert rows and all(row[2] == "MODEL_STATE_READY" for row in rows), ran.stdout
    assert sum(row[-1] == "(default)" for row in rows) == 1
    if REAL:
        assert rows[0][:2] == ["whisper-tiny.en", "whisper"]


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["recognize", "stream"])
def test_unknown_model_is_not_found(go, command):
    ran = go(command, "-model", "no-such-model", str(ROOT / "examples" / "hello.wav"))
    assert ran.returncode == 1 and ran.stdout == ""
    assert ran.stderr.startswith("speechmesh-go: NOT_FOUND (5): model 'no-such-model'"), ran.stderr
    assert '  resource model "no-such-model"' in ran.stderr


def test_bad_language_names_the_field(go):
    ran = go("recognize", "-language", "xx", str(ROOT / "examples" / "hello.wav"))
    assert ran.returncode == 1
    assert ran.stderr.startswith("speechmesh-go: INVALID_ARGUMENT (3): "), ran.stderr
    assert "\n  field config.language_code" in ran.stderr


def test_no_gateway_is_unavailable(go):
    ran = go("models", "-addr", f"127.0.0.1:{free_port()}")
    assert ran.returncode == 1
    assert ran.stderr.startswith("speechmesh-go: UNAVAILABLE (14): "), ran.stderr
    assert "is the gateway running?" in ran.stderr


def test_usage_and_local_errors(go, tmp_path):
    assert go().returncode == 2
    assert go("recognize").returncode == 2  # no file
    assert go("transcribe", "x.wav").returncode == 2
    ran = go("stream", str(JFK if REAL else ROOT / "README.md"))  # not a WAV file
    assert ran.returncode == 1 and "not a WAV file" in ran.stderr
    ran = go("recognize", str(tmp_path / "missing.wav"))
    assert ran.returncode == 1 and "no such file or directory" in ran.stderr


# -- an API key and TLS ------------------------------------------------------------------------


@contextlib.contextmanager
def keyed_tls_gateway(tmp: pathlib.Path, suite) -> Iterator[tuple[str, pathlib.Path]]:
    """An Envoy with API keys (alice: alice-key) and TLS (a self-signed certificate for
    127.0.0.1) before the suite's services: its address and the certificate."""
    from speechmesh.gateway.config import GatewaySettings
    from speechmesh.gateway.envoy_process import envoy_command, write_config

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (it makes the test certificate)")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    keys = tmp / "api-keys.txt"
    keys.write_text("alice alice-key\n")
    settings = GatewaySettings(
        host="127.0.0.1",
        port=free_port(),
        admin_port=free_port(),
        health_check_interval_s=0.5,
        access_log=False,
        auth="api_key",
        api_keys_file=keys,
        tls_cert_file=cert,
        tls_key_file=key,
        asr_upstream=suite.asr,
        translate_upstream=suite.translate,
        tts_upstream=suite.tts,
    )
    config = write_config(settings, tmp / "envoy.yaml")
    with (tmp / "envoy.log").open("w") as log:
        process = subprocess.Popen(envoy_command(settings, config), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while not _asr_healthy(settings.admin_port):
                assert process.poll() is None, (tmp / "envoy.log").read_text()
                assert time.monotonic() < deadline, (tmp / "envoy.log").read_text()
                time.sleep(0.2)
            yield f"127.0.0.1:{settings.port}", cert
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _asr_healthy(admin_port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{admin_port}/clusters"
        with urllib.request.urlopen(url, timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return False
    return re.search(r"^asr::[^\n]*::health_flags::healthy$", text, re.M) is not None


def test_api_key_and_tls(go, suite, tmp_path):
    with keyed_tls_gateway(tmp_path, suite) as (address, cert):
        verified = go("models", "-addr", address, "-cacert", str(cert), "-key", "alice-key")
        assert verified.returncode == 0 and "MODEL_STATE_READY" in verified.stdout, verified.stderr

        unverified = go("models", "-addr", address, "-insecure", "-key", "alice-key")
        assert unverified.returncode == 0, unverified.stderr

        clip = str(ROOT / "examples" / "hello.wav")
        ran = go("recognize", "-addr", address, "-cacert", str(cert), clip, key="alice-key")
        assert ran.returncode == 0 and ran.stdout.startswith("transcript  "), ran.stderr

        for wrong in ([], ["-key", "mallory-key"]):
            ran = go("models", "-addr", address, "-cacert", str(cert), *wrong)
            assert ran.returncode == 1
            assert ran.stderr.startswith("speechmesh-go: UNAUTHENTICATED (16): "), ran.stderr

        # The self-signed certificate is no system CA's, and a plaintext call gets no answer.
        untrusted = go("models", "-addr", address, "-tls", "-key", "alice-key")
        assert untrusted.returncode == 1 and "UNAVAILABLE (14)" in untrusted.stderr
        assert "certificate" in untrusted.stderr
        plaintext = go("models", "-addr", address, "-key", "alice-key")
        assert plaintext.returncode == 1 and "UNAVAILABLE (14)" in plaintext.stderr
