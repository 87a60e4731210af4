"""Generate the API reference (docs/api.md) from the comments in protos/.

    python tools/gen_api_docs.py            # write docs/api.md
    python tools/gen_api_docs.py --check    # exit 1 when docs/api.md is not what this writes

The descriptor set comes from protoc (grpc_tools) run on protos/ with source info, the same
way tools/gen_protos.py builds build/speechmesh.pb, so the page never lags behind the protos;
`--descriptor-set build/speechmesh.pb` reads a built one instead. Services, methods (with
their REST routes from the google.api.http annotations), messages, fields (with their
google.api.field_behavior) and enums are rendered in proto order; every comment is the
proto's own.

tools/gen_openapi.py shares the loading and comment helpers below.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import pathlib
import re
import sys
import tempfile
from collections.abc import Iterator

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"
F = descriptor_pb2.FieldDescriptorProto

# Source-code-info paths (descriptor.proto field numbers).
FILE_SYNTAX = 12
FILE_MESSAGE = 4
FILE_ENUM = 5
FILE_SERVICE = 6
MESSAGE_FIELD = 2
MESSAGE_NESTED = 3
MESSAGE_ENUM = 4
ENUM_VALUE = 2
SERVICE_METHOD = 2

#: Scalar field types by their proto spelling: TYPE_DOUBLE is "double".
SCALARS = {
    number: name.removeprefix("TYPE_").lower()
    for name, number in F.Type.items()
    if number not in (F.TYPE_GROUP, F.TYPE_MESSAGE, F.TYPE_ENUM)
}

#: Types from outside protos/ that fields and methods use, with their JSON form.
EXTERNAL_TYPES = {
    "google.protobuf.Duration": 'A length of time; in JSON a string of seconds with an "s" '
    'suffix: "1.5s", "0.040s".',
    "google.protobuf.Timestamp": "A point in time; in JSON an RFC 3339 string in UTC: "
    '"2026-11-21T08:04:11.123Z".',
    "google.protobuf.Empty": "No fields; in JSON `{}`.",
    "google.api.HttpBody": "An HTTP body as it is: `content_type` and raw `data`. As a REST "
    "request, the body of the HTTP request (any content type); as a response, the HTTP "
    "response's body with its Content-Type. Over gRPC, a message with `content_type` and "
    "`data` (base64 in JSON).",
}

BEHAVIOR_NAMES = {
    value.number: value.name
    for value in field_behavior_pb2.FieldBehavior.DESCRIPTOR.values
    if value.number != 0
}

# -- loading -----------------------------------------------------------------------------------


def compile_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """protoc on every file under protos/, imports and source info included."""
    sys.path.insert(0, str(ROOT / "tools"))
    import gen_protos

    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "set.pb"
        gen_protos.write_descriptor_set(out)
        return parse_descriptor_set(out.read_bytes())


def parse_descriptor_set(data: bytes) -> descriptor_pb2.FileDescriptorSet:
    # annotations_pb2 and field_behavior_pb2 are imported above, so the options' extensions
    # (google.api.http, google.api.field_behavior) parse as known fields.
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(data)
    return files


def load(descriptor_set: pathlib.Path | None) -> descriptor_pb2.FileDescriptorSet:
    if descriptor_set is None:
        return compile_descriptor_set()
    return parse_descriptor_set(descriptor_set.read_bytes())


def own_files(
    files: descriptor_pb2.FileDescriptorSet,
) -> list[descriptor_pb2.FileDescriptorProto]:
    """The speechmesh files: those with services first (asr, translate, tts), then the
    shared types."""
    own = [f for f in files.file if f.package.startswith("speechmesh.")]
    return sorted(own, key=lambda f: (not f.service, f.name))


# -- comments ----------------------------------------------------------------------------------


class Comments:
    """Leading comments of one file, by source-code-info path."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto):
        self._by_path = {
            tuple(location.path): location for location in file.source_code_info.location
        }

    def get(self, *path: int) -> str:
        location = self._by_path.get(path)
        if location is None:
            return ""
        text = location.leading_comments or location.trailing_comments
        lines = [line[1:] if line.startswith(" ") else line for line in text.split("\n")]
        return "\n".join(lines).strip()


def one_line(text: str) -> str:
    """A comment as one table cell: paragraphs kept with <br>, pipes escaped."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return "<br><br>".join(paragraphs).replace("|", "\\|")


def first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]


# -- what the descriptors say ------------------------------------------------------------------


@dataclasses.dataclass
class Route:
    verb: str  # get, post, put, patch, delete
    path: str  # the template as written: /v1/{name=voices/*}
    body: str  # "", "*" or a field name
    response_body: str


def http_routes(method: descriptor_pb2.MethodDescriptorProto) -> list[Route]:
    if not method.options.HasExtension(annotations_pb2.http):
        return []
    rule = method.options.Extensions[annotations_pb2.http]
    return [_route(rule), *(_route(extra) for extra in rule.additional_bindings)]


def _route(rule: http_pb2.HttpRule) -> Route:
    verb = rule.WhichOneof("pattern")
    if verb == "custom":
        return Route(rule.custom.kind.lower(), rule.custom.path, rule.body, rule.response_body)
    return Route(verb, getattr(rule, verb), rule.body, rule.response_body)


def path_variables(template: str) -> list[tuple[str, str]]:
    """(field path, pattern) of each variable of a path template: `{name=voices/*}` ->
    ("name", "voices/*"); a bare `{name}` is ("name", "*")."""
    found = []
    for match in re.finditer(r"\{([^}=]+)(?:=([^}]*))?\}", template):
        found.append((match.group(1), match.group(2) or "*"))
    return found


def field_behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[str]:
    values = field.options.Extensions[field_behavior_pb2.field_behavior]
    return [BEHAVIOR_NAMES.get(value, str(value)) for value in values]


def walk_messages(
    messages, prefix: str, path: tuple[int, ...]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto, tuple[int, ...]]]:
    """(full name without the leading dot, message, source path), nested ones after their
    parent; map entries are skipped."""
    for index, message in enumerate(messages):
        if message.options.map_entry:
            continue
        name = f"{prefix}.{message.name}"
        here = (*path, index)
        yield name, message, here
        yield from walk_messages(message.nested_type, name, (*here, MESSAGE_NESTED))


def walk_enums(
    file: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[str, descriptor_pb2.EnumDescriptorProto, tuple[int, ...]]]:
    for index, enum in enumerate(file.enum_type):
        yield f"{file.package}.{enum.name}", enum, (FILE_ENUM, index)
    for name, message, path in walk_messages(file.message_type, file.package, (FILE_MESSAGE,)):
        for index, enum in enumerate(message.enum_type):
            yield f"{name}.{enum.name}", enum, (*path, MESSAGE_ENUM, index)


def map_entries(
    files: descriptor_pb2.FileDescriptorSet,
) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Full name (with the leading dot) -> map entry message, for every file."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def visit(messages, prefix: str) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            if message.options.map_entry:
                found[name] = message
            visit(message.nested_type, name)

    for file in files.file:
        visit(file.message_type, f".{file.package}" if file.package else "")
    return found


# -- Markdown ----------------------------------------------------------------------------------


def anchor(full_name: str) -> str:
    return full_name.replace(".", "-").lower()


def emit_heading(emit, name: str, heading: str, text: str = "", anchor_id: str = "") -> None:
    """`heading` (with its # marks) under an anchor for `name` (or `anchor_id`), then `text`
    when there is any."""
    emit(f'<a id="{anchor_id or anchor(name)}"></a>')
    emit("")
    emit(heading)
    emit("")
    if text:
        emit(text)
        emit("")


class Renderer:
    def __init__(self, files: descriptor_pb2.FileDescriptorSet):
        self.files = files
        self.own = own_files(files)
        self.maps = map_entries(files)
        self.documented = set()
        for file in self.own:
            for name, _, _ in walk_messages(file.message_type, file.package, (FILE_MESSAGE,)):
                self.documented.add(name)
            for name, _, _ in walk_enums(file):
                self.documented.add(name)

    def type_ref(self, type_name: str) -> str:
        name = type_name.lstrip(".")
        if name in self.documented:
            return f"[{name.rsplit('.', 1)[-1]}](#{anchor(name)})"
        if name in EXTERNAL_TYPES:
            return f"[{name}](#{anchor(name)})"
        return f"`{name}`"

    def field_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type_name in self.maps:
            entry = self.maps[field.type_name]
            key, value = entry.field
            return f"map<{self.field_type(key)}, {self.field_type(value)}>"
        if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
            base = self.type_ref(field.type_name)
        else:
            base = f"`{SCALARS[field.type]}`"
        if field.label == F.LABEL_REPEATED:
            return f"repeated {base}"
        if field.proto3_optional:
            return f"optional {base}"
        return base

    def render(self) -> str:
        out: list[str] = []
        emit = out.append
        emit("# speechmesh API reference")
        emit("")
        emit(
            "Generated by `tools/gen_api_docs.py` (`make docs`) from the comments in"
            " [`protos/`](../protos); edit the protos, not this page."
        )
        emit("")
        emit(
            "Every service is a gRPC service on its own port and on the gateway"
            " (`localhost:8080` with `make run`), and every method with a REST route is also"
            " an HTTP endpoint of the gateway: JSON bodies use the proto field names"
            " (`language_code`; lowerCamelCase is accepted too), 64-bit integers are strings,"
            " enums are their value names, bytes are base64, and errors are"
            " `google.rpc.Status` JSON with the HTTP status of their code. Streaming methods"
            " take a JSON array of request messages and answer server-sent events. The REST"
            " face is also described by [openapi.yaml](openapi.yaml); commands that call it"
            " are in [examples/](../examples/README.md)."
        )
        emit("")
        emit("## Contents")
        emit("")
        for file in self.own:
            emit(f"- [{file.package}](#{self.file_anchor(file)}) (`protos/{file.name}`)")
            for service in file.service:
                full = f"{file.package}.{service.name}"
                emit(f"  - [{service.name}](#{anchor(full)})")
        emit("- [REST routes](#rest-routes)")
        emit("- [Types from outside speechmesh](#types-from-outside-speechmesh)")
        emit("")
        self.render_routes(emit)
        for file in self.own:
            self.render_file(file, emit)
        emit_heading(emit, "types-from-outside-speechmesh", "## Types from outside speechmesh")
        for name, text in EXTERNAL_TYPES.items():
            emit_heading(emit, name, f"### {name}", text)
        return "\n".join(out).rstrip("\n") + "\n"

    def file_anchor(self, file: descriptor_pb2.FileDescriptorProto) -> str:
        """The package's anchor, or the file's when its package spans several files (the
        first file keeps the package's)."""
        first = next(f for f in self.own if f.package == file.package)
        if first is file:
            return anchor(file.package)
        return anchor(f"{file.package}.{pathlib.PurePosixPath(file.name).stem}-proto")

    def render_file(self, file: descriptor_pb2.FileDescriptorProto, emit) -> None:
        comments = Comments(file)
        source = f"`protos/{file.name}`"
        emit_heading(emit, file.package, f"## {file.package}", source, self.file_anchor(file))
        overview = comments.get(FILE_SYNTAX)
        if overview:
            emit(overview)
            emit("")
        for index, service in enumerate(file.service):
            self.render_service(file, service, comments, (FILE_SERVICE, index), emit)
        messages = list(walk_messages(file.message_type, file.package, (FILE_MESSAGE,)))
        if messages:
            emit("### Messages")
            emit("")
            for name, message, path in messages:
                self.render_message(name, message, comments, path, emit)
        enums = list(walk_enums(file))
        if enums:
            emit("### Enums")
            emit("")
            for name, enum, path in enums:
                self.render_enum(name, enum, comments, path, emit)

    def render_service(self, file, service, comments: Comments, path, emit) -> None:
        full = f"{file.package}.{service.name}"
        emit_heading(emit, full, f"### {service.name}", comments.get(*path))
        emit("| Method | Request | Response | REST |")
        emit("| --- | --- | --- | --- |")
        for method in service.method:
            routes = "<br>".join(
                f"`{route.verb.upper()} {route.path}`" for route in http_routes(method)
            )
            emit(
                f"| [{method.name}](#{anchor(full + '.' + method.name)})"
                f" | {self._stream(method.client_streaming)}{self.type_ref(method.input_type)}"
                f" | {self._stream(method.server_streaming)}{self.type_ref(method.output_type)}"
                f" | {routes or 'gRPC only'} |"
            )
        emit("")
        for index, method in enumerate(service.method):
            emit_heading(emit, f"{full}.{method.name}", f"#### {service.name}.{method.name}")
            emit(
                f"`rpc {method.name}({self._stream(method.client_streaming)}"
                f"{method.input_type.lstrip('.')}) returns"
                f" ({self._stream(method.server_streaming)}{method.output_type.lstrip('.')})`"
            )
            emit("")
            for route in http_routes(method):
                text = self.route_text(method, route)
                emit(f"- REST: `{route.verb.upper()} {route.path}`: {text}")
            if http_routes(method):
                emit("")
            text = comments.get(*path, SERVICE_METHOD, index)
            if text:
                emit(text)
                emit("")

    @staticmethod
    def _stream(streaming: bool) -> str:
        return "stream " if streaming else ""

    def route_text(self, method: descriptor_pb2.MethodDescriptorProto, route: Route) -> str:
        parts = [
            f"`{name}` comes from the path (`{pattern}`)"
            for name, pattern in path_variables(route.path)
        ]
        if method.client_streaming:
            parts.append("the body is a JSON array of request messages (it may arrive in chunks)")
        elif method.input_type == ".google.api.HttpBody":
            parts.append("the HTTP body is passed to the service as it is")
        elif route.body == "*":
            parts.append("the JSON body is the request message")
        elif route.body:
            parts.append(
                f"the HTTP body is the `{route.body}` field as it is (raw bytes with their"
                " Content-Type); the other fields are query parameters"
            )
        elif parts:
            parts.append("the other fields are query parameters")
        else:
            parts.append("the request fields are query parameters")
        if method.server_streaming:
            parts.append("answers server-sent events, one `data:` line of JSON per response")
        elif method.output_type == ".google.api.HttpBody" or route.response_body:
            parts.append("answers the raw body with its Content-Type")
        else:
            parts.append("answers the response message as JSON")
        return "; ".join(parts) + "."

    def render_message(self, name: str, message, comments: Comments, path, emit) -> None:
        emit_heading(emit, name, f"#### {name.split('.', 3)[-1]}", comments.get(*path))
        if not message.field:
            emit("No fields.")
            emit("")
            return
        emit("| Field | Type | Description |")
        emit("| --- | --- | --- |")
        for index, field in enumerate(message.field):
            notes = []
            behaviors = field_behaviors(field)
            if behaviors:
                notes.append(", ".join(b.replace("_", " ").lower() for b in behaviors))
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneof = message.oneof_decl[field.oneof_index].name
                notes.append(f"one of `{oneof}`")
            note = f"*{'; '.join(notes)}.* " if notes else ""
            description = one_line(comments.get(*path, MESSAGE_FIELD, index))
            emit(f"| `{field.name}` | {self.field_type(field)} | {note}{description} |")
        emit("")

    def render_enum(self, name: str, enum, comments: Comments, path, emit) -> None:
        emit_heading(emit, name, f"#### {name.split('.', 3)[-1]}", comments.get(*path))
        emit("| Value | Number | Description |")
        emit("| --- | --- | --- |")
        for index, value in enumerate(enum.value):
            description = one_line(comments.get(*path, ENUM_VALUE, index))
            emit(f"| `{value.name}` | {value.number} | {description} |")
        emit("")

    def render_routes(self, emit) -> None:
        intro = "Every route of the gateway's REST face, by path."
        emit_heading(emit, "rest-routes", "## REST routes", intro)
        emit("| Route | Method | Summary |")
        emit("| --- | --- | --- |")
        rows = []
        for file in self.own:
            comments = Comments(file)
            for s_index, service in enumerate(file.service):
                full = f"{file.package}.{service.name}"
                for m_index, method in enumerate(service.method):
                    summary = one_line(
                        first_sentence(comments.get(FILE_SERVICE, s_index, SERVICE_METHOD, m_index))
                    )
                    for route in http_routes(method):
                        rows.append(
                            (
                                route.path,
                                route.verb,
                                f"| `{route.verb.upper()} {route.path}`"
                                f" | [{service.name}.{method.name}]"
                                f"(#{anchor(full + '.' + method.name)}) | {summary} |",
                            )
                        )
        for _, _, row in sorted(rows):
            emit(row)
        emit("")


def render(files: descriptor_pb2.FileDescriptorSet) -> str:
    return Renderer(files).render()


# -- command line ------------------------------------------------------------------------------


def write_or_check(text: str, out: pathlib.Path, check: bool, generator: str) -> int:
    """Writes `text` to `out`, or with `check` compares them; the shared ending of the
    generators."""
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    if check:
        current = out.read_text() if out.is_file() else ""
        if current == text:
            print(f"{shown} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"{shown} (committed)",
            f"{shown} (generated)",
            n=1,
        )
        sys.stdout.writelines(list(diff)[:200])
        print(f"\n{shown} is out of date: run `make docs` (python {generator})")
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {shown}")
    return 0


def arguments(description: str, default_out: pathlib.Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--descriptor-set",
        type=pathlib.Path,
        help="read this descriptor set (built with source info, e.g. build/speechmesh.pb)"
        " instead of compiling protos/",
    )
    parser.add_argument("--out", type=pathlib.Path, default=default_out)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be written"
    )
    return parser.parse_args()


def main() -> int:
    args = arguments("Generate docs/api.md from the protos' comments.", OUT)
    text = render(load(args.descriptor_set))
    return write_or_check(text, args.out.resolve(), args.check, "tools/gen_api_docs.py")


if __name__ == "__main__":
    sys.exit(main())
