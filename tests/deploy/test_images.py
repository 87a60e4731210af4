"""The images: Dockerfiles lint clean, copy only what exists and what .dockerignore lets into the
build context, and each service target listens, checks health and runs as its settings say."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from speechmesh.runtime.registry import SERVICES as CLI_SERVICES
from tests.conftest import ROOT
from tests.deploy.conftest import DOCKERFILES, SERVICES, run, settings_class, tool

DOCKERFILE = ROOT / "docker" / "Dockerfile"
#: Targets an operator builds: one per service, and the small gateway-config image.
TARGETS = (*SERVICES, "gateway-config")


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(path) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM excluded)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in instructions(path):
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)", args, re.IGNORECASE)
            current = match.group(1) if match else f"stage{len(result)}"
            result[current] = [("FROM", args)]
        elif current is not None:
            result[current].append((keyword, args))
    return result


def target_settings(name: str) -> dict[str, list[str]]:
    """INSTRUCTION -> arguments in the target and the stages it builds on (FROM <stage>)."""
    all_stages = stages(DOCKERFILE)
    seen: dict[str, list[str]] = {}
    chain = []
    while name in all_stages:
        chain.append(name)
        base = all_stages[name][0][1].split()[0]
        name = base
    for stage in reversed(chain):
        for keyword, args in all_stages[stage][1:]:
            seen.setdefault(keyword, []).append(args)
    return seen


# -- .dockerignore ------------------------------------------------------------------------------


def _rules() -> list[tuple[bool, list[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((negate, pattern.split("/")))
    return rules


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])
    )


def in_context(path: str) -> bool:
    """Whether `path` (relative to the repo) is sent to the builder, by Docker's rules: the last
    pattern matching the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    keep = True
    for negate, pattern in _rules():
        if any(_match(pattern, parts[:k]) for k in range(1, len(parts) + 1)):
            keep = negate
    return keep


def tracked(path: str) -> list[str]:
    """Files a clone has under `path`: tracked, or new and not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


# -- tests ----------------------------------------------------------------------------------------


def test_there_is_a_dockerfile():
    assert DOCKERFILE in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(dockerfile):
    """No rule is ignored (no .hadolint.yaml, no inline ignores)."""
    result = run([tool("hadolint"), "--failure-threshold", "info", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in dockerfile.read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    copies = [args for keyword, args in instructions(dockerfile) if keyword in ("COPY", "ADD")]
    assert copies
    checked = 0
    for args in copies:
        words = shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue  # from another stage
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repo"
            files = tracked(source)
            assert files, f"COPY {source}: nothing tracked by git there"
            missing = [f for f in files if not in_context(f)]
            assert not missing, f"COPY {source}: .dockerignore keeps out {missing[:5]}"
            checked += 1
    assert checked >= 5


def test_dockerignore_keeps_local_and_generated_files_out():
    for path in (
        ".venv/bin/python",
        "build/speechmesh.pb",
        "services/asr/v1/asr_pb2.py",
        "services/audio/v1/audio_pb2.py",
        "services/asr/__pycache__/app.cpython-311.pyc",
        "tests/conftest.py",
        ".git/HEAD",
    ):
        assert not in_context(path), path
    assert in_context("services/asr/app.py")
    assert in_context("protos/speechmesh/asr/v1/asr.proto")


def test_one_target_per_service_and_the_gateway_config():
    assert set(SERVICES) == set(CLI_SERVICES), "a service of `speechmesh serve` has no image"
    assert set(TARGETS) <= set(stages(DOCKERFILE))


@pytest.mark.parametrize("service", SERVICES)
def test_service_target_ports_health_and_command(service):
    seen = target_settings(service)
    defaults = settings_class(service)()
    exposed = {int(p) for args in seen["EXPOSE"] for p in args.split()}
    ports = {defaults.port, defaults.metrics_port} | {getattr(defaults, "websocket_port", 0)} - {0}
    assert ports == exposed, (ports, exposed)  # the realtime WebSocket port too (asr, tts)
    (health,) = seen["HEALTHCHECK"]
    assert '"speechmesh.runtime.healthcheck", "--service", "' + service + '"' in health
    assert "--start-period=" in health
    assert seen["CMD"][-1] == f'["speechmesh", "serve", "{service}"]'
    (user,) = seen["USER"]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:"), "numeric non-root user"


def test_runtime_is_read_only_friendly():
    seen = target_settings("tts")
    env = " ".join(seen["ENV"])
    # Every cache points at a volume or /tmp, never at the image.
    for variable in ("HF_HOME=/cache/", "XDG_CACHE_HOME=/cache", "HOME=/tmp"):
        assert variable in env, variable
    assert "SPEECHMESH_TTS_VOICES_DIR=/data/voices" in env
    assert "/data/voices" in " ".join(seen["RUN"])


def test_base_images_are_pinned():
    for keyword, args in instructions(DOCKERFILE):
        if keyword == "ARG" and args.startswith("BASE_IMAGE="):
            image = args.split("=", 1)[1]
            assert re.search(r":\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime$|@sha256:", image)
        if keyword == "FROM":
            image = args.split()[0]
            if image.startswith("${") or image in stages(DOCKERFILE):
                continue
            assert re.search(r":[\w.-]*\d[\w.-]*$|@sha256:", image), image


def test_protos_are_generated_in_the_image():
    """The stubs and descriptor set are gitignored: the builder makes them, with grpcio-tools in
    its own venv that no runtime stage copies."""
    all_stages = stages(DOCKERFILE)
    builder = " ".join(args for keyword, args in all_stages["builder"] if keyword == "RUN")
    assert "tools/gen_protos.py" in builder and "grpcio-tools" in builder
    for target in TARGETS:
        copies = " ".join(target_settings(target).get("COPY", []))
        assert "/opt/speechmesh/speechmesh.pb" in copies, target
        assert "/opt/protoc" not in copies and "grpcio-tools" not in copies, target


def test_constraints_pin_every_runtime_dependency():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = {}
    for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    for requirement in pyproject["project"]["dependencies"]:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()
        if name == "torch":
            continue  # from the CUDA base image
        assert name in pinned, f"{name} is not pinned in docker/constraints.txt"


def test_gateway_config_renders_without_the_service_stack(tmp_path, descriptor_set):
    """The gateway-config image has Python, pydantic(-settings), PyYAML, protobuf and
    googleapis-common-protos only: rendering must import none of the heavy packages."""
    blocked = ["torch", "transformers", "grpc", "numpy", "huggingface_hub", "soundfile", "av"]
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not in the gateway-config image: " + name)
sys.meta_path.insert(0, Block())
from speechmesh.gateway.container import main
sys.exit(main(["--out", {str(tmp_path / "envoy.yaml")!r}]))
"""
    env = {"SPEECHMESH_GATEWAY_DESCRIPTOR_SET": str(descriptor_set), "PATH": "/usr/bin:/bin"}
    result = run([sys.executable, "-c", code], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "envoy.yaml").stat().st_size > 10_000
