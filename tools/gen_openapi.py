"""Generate the OpenAPI 3.1 description of the gateway's REST face (docs/openapi.yaml) from the
google.api.http annotations and comments in protos/.

    python tools/gen_openapi.py            # write docs/openapi.yaml
    python tools/gen_openapi.py --check    # exit 1 when docs/openapi.yaml is not what this writes

The REST face is Envoy's gRPC-JSON transcoder reading the same descriptors, so this mirrors
what it does:

- a path template's variables become path parameters; `{name=voices/*}` is written
  `/voices/{voice_id}` (OpenAPI parameters cannot hold a slash), `{model=**}` `/{model}`;
- `body: "*"` makes the request message the JSON body; `body: "FIELD"` (a google.api.HttpBody)
  makes the raw HTTP body that field, with the other fields as query parameters; no body
  makes every field a query parameter (nested fields dotted: `config.language_code`);
- a method that takes google.api.HttpBody itself gets the HTTP body as it is;
- a client-streaming method takes a JSON array of request messages; a server-streaming one
  answers server-sent events (`data:` lines, one JSON response each);
- a google.api.HttpBody response is the raw body with the service's Content-Type;
- JSON uses the proto field names (lowerCamelCase is accepted too), 64-bit integers are
  strings, enums their value names, bytes base64, Durations strings such as "1.5s";
- errors are google.rpc.Status JSON with the HTTP status of their code.

Loading and comments come from tools/gen_api_docs.py.
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import gen_api_docs as api
from gen_api_docs import F

OUT = api.ROOT / "docs" / "openapi.yaml"
REF = "#/components/schemas/"
STATUS = "google.rpc.Status"

#: Example values for path parameters, by the field they fill.
PATH_EXAMPLES = {"name": "jane", "model": "whisper-1"}

DURATION_SCHEMA = {
    "type": "string",
    "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
    "description": 'A google.protobuf.Duration: seconds with an "s" suffix, such as "1.5s".',
    "examples": ["1.5s"],
}
WELL_KNOWN = {
    ".google.protobuf.Duration": DURATION_SCHEMA,
    ".google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "A google.protobuf.Timestamp: RFC 3339 in UTC.",
    },
    ".google.protobuf.Empty": {"type": "object", "description": "No fields."},
}

SCALAR_SCHEMAS: dict[int, dict[str, Any]] = {
    F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # 64-bit integers are JSON strings (numbers are accepted on input).
    F.TYPE_INT64: {"type": "string", "format": "int64"},
    F.TYPE_SINT64: {"type": "string", "format": "int64"},
    F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


def openapi_path(template: str) -> tuple[str, list[tuple[str, str, str]]]:
    """An http rule's path template as an OpenAPI path, and its parameters as
    (parameter name, field path, pattern)."""
    params: list[tuple[str, str, str]] = []

    def replace(match: re.Match) -> str:
        field, pattern = match.group(1), match.group(2) or "*"
        segments = pattern.split("/")
        wildcards = [i for i, segment in enumerate(segments) if segment in ("*", "**")]
        out = []
        for index, segment in enumerate(segments):
            if index not in wildcards:
                out.append(segment)
                continue
            before = segments[index - 1] if index else ""
            if len(wildcards) == 1 and before.endswith("s"):
                name = f"{before[:-1]}_id"  # voices/* -> voice_id
            elif len(wildcards) == 1:
                name = field.replace(".", "_")
            else:
                name = f"{field.replace('.', '_')}_{len(params) + 1}"
            params.append((name, field, pattern))
            out.append(f"{{{name}}}")
        return "/".join(out)

    return re.sub(r"\{([^}=]+)(?:=([^}]*))?\}", replace, template), params


class Generator:
    def __init__(self, files):
        self.files = files
        self.own = api.own_files(files)
        self.maps = api.map_entries(files)
        self.messages: dict[str, tuple[Any, api.Comments, tuple[int, ...]]] = {}
        self.enums: dict[str, tuple[Any, api.Comments, tuple[int, ...]]] = {}
        for file in files.file:
            comments = api.Comments(file)
            for name, message, path in api.walk_messages(
                file.message_type, file.package, (api.FILE_MESSAGE,)
            ):
                self.messages[f".{name}"] = (message, comments, path)
            for name, enum, path in api.walk_enums(file):
                self.enums[f".{name}"] = (enum, comments, path)
        self.schemas: dict[str, Any] = {}

    # -- schemas -----------------------------------------------------------------------------

    def ref(self, type_name: str) -> dict[str, Any]:
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        name = type_name.lstrip(".")
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder against recursion
            if type_name in self.enums:
                self.schemas[name] = self.enum_schema(type_name)
            else:
                self.schemas[name] = self.message_schema(type_name)
        return {"$ref": REF + name}

    def enum_schema(self, type_name: str) -> dict[str, Any]:
        enum, comments, path = self.enums[type_name]
        lines = [comments.get(*path)] if comments.get(*path) else []
        for index, value in enumerate(enum.value):
            text = " ".join(comments.get(*path, api.ENUM_VALUE, index).split())
            lines.append(f"- `{value.name}`: {text}" if text else f"- `{value.name}`")
        return {
            "type": "string",
            "enum": [value.name for value in enum.value],
            "description": "\n".join(lines),
        }

    def field_schema(self, field) -> dict[str, Any]:
        if field.type_name in self.maps:
            key, value = self.maps[field.type_name].field
            del key  # JSON object keys are strings
            return {"type": "object", "additionalProperties": self.single_schema(value)}
        schema = self.single_schema(field)
        if field.label == F.LABEL_REPEATED:
            return {"type": "array", "items": schema}
        return schema

    def single_schema(self, field) -> dict[str, Any]:
        if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
            return self.ref(field.type_name)
        return dict(SCALAR_SCHEMAS[field.type])

    def message_schema(self, type_name: str) -> dict[str, Any]:
        message, comments, path = self.messages[type_name]
        properties: dict[str, Any] = {}
        required = []
        for index, field in enumerate(message.field):
            schema = self.field_schema(field)
            notes = []
            if field.HasField("oneof_index") and not field.proto3_optional:
                notes.append(
                    f"One of `{message.oneof_decl[field.oneof_index].name}`: set at most one"
                    " of its fields."
                )
            text = comments.get(*path, api.MESSAGE_FIELD, index)
            description = "\n\n".join([*notes, text] if text else notes)
            behaviors = api.field_behaviors(field)
            if "REQUIRED" in behaviors:
                required.append(field.name)
            if "OUTPUT_ONLY" in behaviors:
                schema["readOnly"] = True
            if "INPUT_ONLY" in behaviors:
                schema["writeOnly"] = True
            if description:
                if "$ref" in schema:
                    # A $ref with a description beside it (allowed in OpenAPI 3.1).
                    schema = {"$ref": schema["$ref"], "description": description}
                else:
                    schema["description"] = description
            properties[field.name] = schema
        out: dict[str, Any] = {"type": "object"}
        if comments.get(*path):
            out["description"] = comments.get(*path)
        out["properties"] = properties
        if required:
            out["required"] = required
        return out

    def status_schema(self) -> None:
        self.schemas[STATUS] = {
            "type": "object",
            "description": "The error of a failed call: its google.rpc.Code, a message for"
            " developers and typed details (google.rpc.BadRequest with field violations,"
            " ResourceInfo, RetryInfo, ErrorInfo). The HTTP status is the code's: 400 for"
            " INVALID_ARGUMENT (3), 401 for UNAUTHENTICATED (16), 404 for NOT_FOUND (5), 429 for"
            " RESOURCE_EXHAUSTED (8), 503 for UNAVAILABLE (14), and so on.",
            "properties": {
                "code": {"type": "integer", "format": "int32", "description": "A google.rpc.Code."},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"@type": {"type": "string"}},
                        "required": ["@type"],
                        "additionalProperties": True,
                    },
                },
            },
            "required": ["code", "message"],
        }

    # -- parameters --------------------------------------------------------------------------

    def query_parameters(
        self, type_name: str, prefix: str, skip: set[str], seen: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Every field reachable as a query parameter (scalars, enums, repeated scalars,
        Durations; non-repeated messages by their dotted fields)."""
        message, comments, path = self.messages[type_name]
        params = []
        for index, field in enumerate(message.field):
            name = f"{prefix}{field.name}"
            if name in skip:
                continue
            text = " ".join(comments.get(*path, api.MESSAGE_FIELD, index).split())
            if field.type == F.TYPE_MESSAGE and field.type_name not in WELL_KNOWN:
                if field.label == F.LABEL_REPEATED or field.type_name in seen:
                    continue
                if field.type_name == ".google.api.HttpBody":
                    continue
                params += self.query_parameters(
                    field.type_name, f"{name}.", skip, (*seen, field.type_name)
                )
                continue
            schema = self.field_schema(field)
            param: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
            if text:
                param["description"] = text
            if field.label == F.LABEL_REPEATED:
                param["explode"] = True
            params.append(param)
        return params

    # -- operations --------------------------------------------------------------------------

    def operation(self, file, service, method, s_index, m_index, route: api.Route):
        comments = api.Comments(file)
        text = comments.get(api.FILE_SERVICE, s_index, api.SERVICE_METHOD, m_index)
        path, path_params = openapi_path(route.path)
        grpc_path = f"/{file.package}.{service.name}/{method.name}"
        label = self.service_label(file, service)
        op: dict[str, Any] = {
            "operationId": f"{label.replace('.', '_')}_{method.name}",
            "tags": [label],
            "summary": api.first_sentence(text) if text else method.name,
            "description": text,
            "x-grpc-method": grpc_path,
        }
        params: list[dict[str, Any]] = []
        for name, field, pattern in path_params:
            filled = pattern.replace("**", "{" + name + "}").replace("*", "{" + name + "}")
            description = f"The request's `{field}` is `{filled}`."
            if "**" in pattern:
                description += " It may contain slashes, sent as they are (not percent-encoded)."
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": description,
                    "schema": {"type": "string"},
                    "example": PATH_EXAMPLES.get(field, "example"),
                }
            )
        takes_http_body = method.input_type == ".google.api.HttpBody"
        if not takes_http_body and route.body != "*" and not method.client_streaming:
            skip = {field for _, field, _ in path_params}
            if route.body:
                skip.add(route.body)
            params += self.query_parameters(method.input_type, "", skip)
        if params:
            op["parameters"] = params
        body = self.request_body(method, route)
        if body:
            op["requestBody"] = body
        op["responses"] = {
            "200": self.success(method, route),
            "default": {
                "description": "An error, as google.rpc.Status JSON with the HTTP status of its"
                " code.",
                "content": {"application/json": {"schema": {"$ref": REF + STATUS}}},
            },
        }
        return path, op

    def request_body(self, method, route: api.Route) -> dict[str, Any] | None:
        if method.client_streaming:
            return {
                "required": True,
                "description": "A JSON array of request messages, the first with the"
                " configuration. It may be sent in chunks (Transfer-Encoding: chunked) while"
                " the audio or text is produced; results stream back meanwhile.",
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": self.ref(method.input_type)}
                    }
                },
            }
        if method.input_type == ".google.api.HttpBody":
            return {
                "required": True,
                "description": "The HTTP body as it is, passed to the service with its"
                " Content-Type (see the operation's description for what it takes).",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        if route.body == "*":
            return {
                "required": True,
                "content": {"application/json": {"schema": self.ref(method.input_type)}},
            }
        if route.body:
            message, comments, path = self.messages[method.input_type]
            index = [f.name for f in message.field].index(route.body)
            text = " ".join(comments.get(*path, api.MESSAGE_FIELD, index).split())
            return {
                "required": True,
                "description": f"The request's `{route.body}`, as it is. {text}".strip(),
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        return None

    def success(self, method, route: api.Route) -> dict[str, Any]:
        output = method.output_type
        if method.server_streaming:
            name = output.lstrip(".")
            return {
                "description": "Server-sent events: one `data:` line per response message, each"
                f" a {name} as JSON (components/schemas/{name}). A failure after the"
                " stream started is a last event holding a google.rpc.Status.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "x-event-schema": self.ref(output),
            }
        if output == ".google.api.HttpBody" or route.response_body:
            return {
                "description": "The raw body, with the Content-Type the service sets (audio"
                " such as audio/wav, or JSON and text for the OpenAI-compatible routes).",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        return {
            "description": f"A {output.lstrip('.')}.",
            "content": {"application/json": {"schema": self.ref(output)}},
        }

    # -- the document ------------------------------------------------------------------------

    def service_label(self, file, service) -> str:
        """A service's tag: its name, or "area.Name" when several packages have a service of
        that name (every service's OperationsService)."""
        names = [s.name for f in self.own for s in f.service]
        if names.count(service.name) == 1:
            return service.name
        return f"{file.package.split('.')[1]}.{service.name}"

    def document(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        tags = []
        for file in self.own:
            comments = api.Comments(file)
            for s_index, service in enumerate(file.service):
                tags.append(
                    {
                        "name": self.service_label(file, service),
                        "description": comments.get(api.FILE_SERVICE, s_index)
                        + f"\n\ngRPC service `{file.package}.{service.name}`.",
                    }
                )
                for m_index, method in enumerate(service.method):
                    for route in api.http_routes(method):
                        path, op = self.operation(file, service, method, s_index, m_index, route)
                        paths.setdefault(path, {})[route.verb] = op
        self.status_schema()
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "speechmesh REST API",
                "version": "v1",
                "summary": "Speech recognition, translation and synthesis over REST, through"
                " the speechmesh gateway.",
                "description": (
                    "Generated by `tools/gen_openapi.py` (`make docs`) from the"
                    " `google.api.http` annotations and comments of the protos; the gateway"
                    " (Envoy's gRPC-JSON transcoder) serves exactly these routes from the same"
                    " descriptors. JSON uses the proto field names (lowerCamelCase is accepted"
                    " too); every field is printed, defaults included; 64-bit integers are"
                    " strings; bytes are base64. The full reference, gRPC included, is"
                    " docs/api.md.\n\nAuthentication is off unless the gateway runs with"
                    " SPEECHMESH_GATEWAY_AUTH: then send `x-api-key: KEY` or"
                    " `Authorization: Bearer KEY|TOKEN`."
                ),
                "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            },
            "servers": [{"url": "http://localhost:8080", "description": "make run"}],
            "tags": tags,
            "paths": dict(sorted(paths.items())),
            "components": {
                "schemas": dict(sorted(self.schemas.items())),
                "securitySchemes": {
                    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                    "bearer": {"type": "http", "scheme": "bearer"},
                },
            },
        }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(files) -> str:
    document = Generator(files).document()
    header = (
        "# Generated by tools/gen_openapi.py from protos/ (make docs); do not edit.\n"
        "# The gateway's REST face: see docs/api.md and examples/README.md.\n"
    )
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def main() -> int:
    args = api.arguments("Generate docs/openapi.yaml from the protos' HTTP annotations.", OUT)
    text = render(api.load(args.descriptor_set))
    return api.write_or_check(text, args.out.resolve(), args.check, "tools/gen_openapi.py")


if __name__ == "__main__":
    sys.exit(main())
