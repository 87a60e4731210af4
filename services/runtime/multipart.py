"""multipart/form-data request bodies (RFC 7578), as Envoy hands them over whole.

Envoy cannot parse multipart/form-data, so a route that takes an upload (OpenAI's
`/v1/audio/transcriptions`) gets the HTTP body as it came in a google.api.HttpBody: its
`content_type` with the boundary, and the bytes. `parse_multipart` splits it into text fields,
repeated fields (`name[]`) and file parts; every mistake is INVALID_ARGUMENT naming the field
(or `content_type` for a body that is not a well-formed form).
"""

from __future__ import annotations

import dataclasses
from email.message import Message

from speechmesh.runtime import errors

#: Limits of multipart uploads (the file part is bounded by the request size only).
MAX_PARTS = 64
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


@dataclasses.dataclass(frozen=True)
class FilePart:
    """An uploaded file: a form part with a filename."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclasses.dataclass
class Form:
    """The parts of a multipart/form-data body, in order, by field name."""

    fields: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    files: dict[str, list[FilePart]] = dataclasses.field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        """The one value of a text field; `default` when absent; INVALID_ARGUMENT when given
        twice or as a file."""
        if name in self.files:
            raise errors.invalid_argument(name, "must be a text field, not a file")
        values = self.fields.get(name, [])
        if len(values) > 1:
            raise errors.invalid_argument(name, f"is given {len(values)} times; give it once")
        return values[0] if values else default

    def texts(self, name: str) -> list[str]:
        """Every value of a repeated field (`timestamp_granularities[]`), in order."""
        if name in self.files:
            raise errors.invalid_argument(name, "must be a text field, not a file")
        return list(self.fields.get(name, []))

    def file(self, name: str) -> FilePart:
        """The one uploaded file of a field; INVALID_ARGUMENT when missing or repeated."""
        files = self.files.get(name, [])
        if not files:
            hint = (
                " (it came as a text field: send it as a file, e.g. curl -F file=@speech.wav)"
                if name in self.fields
                else " (e.g. curl -F file=@speech.wav)"
            )
            raise errors.invalid_argument(name, f"is required: upload the audio file{hint}")
        if len(files) > 1:
            raise errors.invalid_argument(name, f"is given {len(files)} times; upload one file")
        return files[0]


def header_params(value: str, header: str) -> Message:
    """A header's value parsed with its parameters (`boundary`, `name`, `filename`...)."""
    message = Message()
    message[header] = value
    return message


def parse_multipart(
    content_type: str,
    body: bytes,
    *,
    max_parts: int = MAX_PARTS,
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> Form:
    """Parses a multipart/form-data body (RFC 7578, CRLF line ends as RFC 2046 requires).

    Parts with a filename are files (any size); the others are UTF-8 text fields of at most
    `max_field_bytes`. INVALID_ARGUMENT naming `content_type` for a body that is not
    multipart/form-data, or the field for a bad part.
    """
    header = header_params(content_type or "", "content-type")
    if header.get_content_type() != "multipart/form-data":
        raise errors.invalid_argument(
            "content_type",
            f"is {content_type or 'empty'!r}; send multipart/form-data"
            " (curl -F file=@speech.wav -F model=whisper-1)",
        )
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise errors.invalid_argument(
            "content_type", "multipart/form-data needs a boundary parameter of 1 to 70 characters"
        )
    delimiter = b"--" + boundary.encode("latin-1")
    # The first delimiter opens the body or follows a preamble's CRLF.
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise errors.invalid_argument(
                "content_type", "the body holds no part delimited by the boundary it names"
            )
        position = found + 2 + len(delimiter)
    form = Form()
    parts = 0
    next_delimiter = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", position):
            return form  # the close delimiter; an epilogue after it is ignored
        # Transport padding (spaces, tabs), then the CRLF that ends the delimiter line.
        while position < len(body) and body[position] in b" \t":
            position += 1
        if not body.startswith(b"\r\n", position):
            raise errors.invalid_argument(
                "content_type", "malformed multipart body: a delimiter line does not end in CRLF"
            )
        position += 2
        end = body.find(next_delimiter, position)
        if end < 0:
            raise errors.invalid_argument(
                "content_type", "malformed multipart body: it ends before its close delimiter"
            )
        parts += 1
        if parts > max_parts:
            raise errors.invalid_argument("content_type", f"has over {max_parts} form parts")
        _add_part(form, body[position:end], max_field_bytes)
        position = end + len(next_delimiter)


def _add_part(form: Form, part: bytes, max_field_bytes: int) -> None:
    if part.startswith(b"\r\n"):
        raw_headers, data = b"", part[2:]
    else:
        split = part.find(b"\r\n\r\n")
        if split < 0 or split > MAX_HEADER_BYTES:
            raise errors.invalid_argument(
                "content_type", "malformed multipart body: a part's headers do not end"
            )
        raw_headers, data = part[:split], part[split + 4 :]
    headers: dict[str, str] = {}
    for line in raw_headers.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    disposition = header_params(headers.get("content-disposition", ""), "content-disposition")
    name = disposition.get_param("name", header="content-disposition")
    if disposition.get_content_disposition() != "form-data" or not isinstance(name, str):
        raise errors.invalid_argument(
            "content_type",
            "every multipart part needs `Content-Disposition: form-data; name=...`",
        )
    filename = disposition.get_filename()
    if filename is not None:
        content_type = headers.get("content-type", "application/octet-stream")
        form.files.setdefault(name, []).append(FilePart(name, filename, content_type, data))
        return
    if len(data) > max_field_bytes:
        raise errors.invalid_argument(
            name, f"is {len(data)} bytes; a text field may hold at most {max_field_bytes}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_argument(name, "is not UTF-8 text") from None
    form.fields.setdefault(name, []).append(text)
