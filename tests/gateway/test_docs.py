"""The generated API reference (docs/api.md) and OpenAPI description (docs/openapi.yaml): the
committed files are what the generators write from protos/, the OpenAPI document is valid, it
holds every annotated RPC, and every route it lists answers through the live gateway.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

TOOLS = ROOT / "tools"
API_MD = ROOT / "docs" / "api.md"
OPENAPI = ROOT / "docs" / "openapi.yaml"
UNRESOLVED = "Could not resolve"  # the transcoder's answer to a route it does not know


def _module(name: str):
    """A generator in tools/ as a module (they import each other by name from there)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def api():
    return _module("gen_api_docs")


@pytest.fixture(scope="module")
def files(api):
    return api.compile_descriptor_set()


@pytest.fixture(scope="module")
def openapi() -> dict:
    return yaml.safe_load(OPENAPI.read_text())


def annotated_rpcs(api, files) -> dict[str, list]:
    """gRPC path -> its http routes, for every speechmesh method with an annotation."""
    found = {}
    for file in api.own_files(files):
        for service in file.service:
            for method in service.method:
                routes = api.http_routes(method)
                if routes:
                    found[f"/{file.package}.{service.name}/{method.name}"] = routes
    return found


def operations(openapi: dict):
    for path, item in openapi["paths"].items():
        for verb, operation in item.items():
            yield path, verb, operation


@pytest.mark.parametrize("tool", ["gen_api_docs", "gen_openapi"])
def test_committed_file_is_what_the_generator_writes(tool):
    done = subprocess.run(
        [sys.executable, str(TOOLS / f"{tool}.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_api_reference_documents_every_method_message_and_enum(api, files):
    text = API_MD.read_text()
    for file in api.own_files(files):
        for service in file.service:
            for method in service.method:
                assert f"#### {service.name}.{method.name}\n" in text
        for name, _, _ in api.walk_messages(file.message_type, file.package, (4,)):
            assert f'<a id="{api.anchor(name)}"></a>' in text, name
        for name, _, _ in api.walk_enums(file):
            assert f'<a id="{api.anchor(name)}"></a>' in text, name
    # Every link inside the page lands on an anchor of the page.
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    targets = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert targets <= anchors, sorted(targets - anchors)[:10]


def test_readme_links_the_references():
    readme = (ROOT / "README.md").read_text()
    for target in ("docs/api.md", "docs/openapi.yaml", "examples/README.md"):
        assert f"({target})" in readme, target


# -- the hand-written pages: a short README, every link inside the repository ------------------

#: The pages people write (docs/api.md is generated and checked above).
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "api.md"),
    ROOT / "examples" / "README.md",
]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The page without its fenced code blocks (their brackets and `#` lines are not markdown)."""
    return FENCE.sub("", text)


def _anchors(page) -> set[str]:
    """GitHub's heading anchors of a markdown page, plus its explicit `<a id>` anchors."""
    text = page.read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_readme_is_a_front_door():
    """At most ~250 lines, and every docs page is reachable from it."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in PAGES[1:-1]:
        assert f"(docs/{page.name})" in readme, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_land_inside_the_repository(page):
    """Every relative link names a file of the repository (never one beside it, such as
    ../shared) and, with a #fragment into a markdown page, one of its headings."""
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...: a page on the web
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT.resolve()):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target}: no such heading")
    assert not broken, broken


def test_openapi_is_valid(openapi):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi)
    assert openapi["openapi"].startswith("3.")


def test_openapi_holds_every_annotated_rpc_and_nothing_else(api, files, openapi):
    gen_openapi = _module("gen_openapi")
    expected = set()
    for grpc_path, routes in annotated_rpcs(api, files).items():
        for route in routes:
            path, _ = gen_openapi.openapi_path(route.path)
            expected.add((path, route.verb, grpc_path))
    listed = {(path, verb, op["x-grpc-method"]) for path, verb, op in operations(openapi)}
    assert listed == expected
    ids = [op["operationId"] for _, _, op in operations(openapi)]
    assert len(ids) == len(set(ids))


def _request(up, path: str, verb: str, operation: dict):
    """The smallest request for an operation: path parameters from their examples, `{}` or
    `[]` for JSON bodies, an empty raw body."""
    for param in operation.get("parameters", []):
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", str(param["example"]))
    body, headers = None, {}
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        is_array = content["application/json"]["schema"].get("type") == "array"
        body, headers = (b"[]" if is_array else b"{}"), {"Content-Type": "application/json"}
    elif content:
        body, headers = b"", {"Content-Type": "application/octet-stream"}
    return up.gateway.request(verb.upper(), path, body, headers)


#: LoadModel and UnloadModel: operators only (SPEECHMESH_OPERATORS, unset here).
ADMIN_PATHS = {"/v1/asr/models/{name}:load", "/v1/asr/models/{name}:unload"}


def test_every_openapi_route_answers_through_the_gateway(up, openapi):
    """Each path and method reaches its service (Envoy's x-envoy-upstream-service-time is on
    the answer) rather than the transcoder's 404 for unknown routes; the services answer
    minimal requests with 200, or 400/404 naming what is missing; the admin routes with 403 (the
    caller is no operator)."""
    answers = {}
    for path, verb, operation in operations(openapi):
        reply = _request(up, path, verb, operation)
        answers[f"{verb.upper()} {path}"] = reply.status
        assert "x-envoy-upstream-service-time" in reply.headers, (path, verb, reply.body[:300])
        assert UNRESOLVED.encode() not in reply.body, (path, verb, reply.body[:300])
        if path in ADMIN_PATHS:
            assert reply.status == 403, (path, verb, reply.status, reply.body[:300])
            assert json.loads(reply.body)["code"] == 7, (path, verb, reply.body[:300])
            continue
        assert reply.status in (200, 400, 404), (path, verb, reply.status, reply.body[:300])
        if reply.status != 200:
            assert json.loads(reply.body)["code"] in (3, 5), (path, verb, reply.body[:300])
    # The ones that need nothing answer 200.
    for route in ("GET /v1/asr/models", "GET /v1/voices", "GET /v1/models/{model}"):
        assert answers[route] == 200, answers


def test_a_route_outside_the_description_is_not_served(up, openapi):
    """The check above can fail: a method the description does not list on a path it does is
    the transcoder's 404, with no upstream behind it."""
    assert "put" not in openapi["paths"]["/v1/asr:recognize"]
    reply = up.gateway.request("PUT", "/v1/asr:recognize", b"{}", {})
    assert reply.status == 404
    assert UNRESOLVED in reply.json()["message"]
    assert "x-envoy-upstream-service-time" not in reply.headers


def test_generators_accept_a_built_descriptor_set(tmp_path):
    built = ROOT / "build" / "speechmesh.pb"
    if not built.is_file():
        pytest.skip("no build/speechmesh.pb (make protos)")
    for tool, name in (("gen_api_docs", "api.md"), ("gen_openapi", "openapi.yaml")):
        out = tmp_path / name
        done = subprocess.run(
            [
                sys.executable,
                str(TOOLS / f"{tool}.py"),
                "--descriptor-set",
                str(built),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert out.read_text().startswith(("# speechmesh API", "# Generated by tools/gen_openapi"))
