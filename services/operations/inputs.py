"""Where a job's audio comes from (speechmesh.common.v1.AudioInput): inline bytes, an upload,
a file under the jobs file root, or a URL on a host the operator allowed.

`check` runs when the job is created, so that a wrong input fails the create call and not the
job; `read` runs on the worker and checks again (a file can move, an upload can expire while
the job waits). Nothing outside the file root is ever opened: paths are resolved (links
followed) before the check, and `..` is refused outright. URLs are fetched only from allowed
hosts, redirects included, and never beyond the upload size limit (server-side request
forgery).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.operations.settings import JobsSettings
from speechmesh.operations.store import JobStore
from speechmesh.runtime import errors

UPLOAD_NAME = re.compile(r"uploads/([a-z0-9]{1,64})")
URL_TIMEOUT_S = 30.0


class Inputs:
    def __init__(self, store: JobStore, service: str, settings: JobsSettings):
        self.store = store
        self.service = service
        self.settings = settings

    async def check(self, sources: list[ops_pb2.AudioInput], owner: str, field: str) -> list[str]:
        """Checks every input of a new job (`field` is their path in the request, e.g.
        "files"); returns the ids of the uploads they read. Raises ApiError. That each input
        has a source is the job kind's check (speechmesh.operations.files.check_files); this
        one checks what takes the store or the settings."""
        uploads = []
        for index, source in enumerate(sources):
            at = f"{field}[{index}]"
            kind = source.WhichOneof("source")
            if kind == "upload":
                uploads.append(await self._ready_upload(source.upload, owner, f"{at}.upload"))
            if kind == "uri":
                self._check_uri(source.uri, f"{at}.uri")
        return uploads

    async def read(self, source: ops_pb2.AudioInput, owner: str) -> bytes:
        """The bytes of one input, checked again; ApiError when it went away."""
        kind = source.WhichOneof("source")
        if kind == "content":
            return source.content
        if kind == "upload":
            upload_id = await self._ready_upload(source.upload, owner, "upload")
            return await asyncio.to_thread(self.store.read_upload, upload_id)
        if kind == "uri":
            target = self._check_uri(source.uri, "uri")
            if isinstance(target, Path):
                return await asyncio.to_thread(self._read_file, target, source.uri)
            return await asyncio.to_thread(self._fetch, target)
        raise errors.invalid_argument("files", "an input has no source")

    # -- uploads -------------------------------------------------------------------------

    async def _ready_upload(self, name: str, owner: str, at: str) -> str:
        match = UPLOAD_NAME.fullmatch(name)
        if match is None:
            raise errors.invalid_argument(at, f"{name!r} is not an upload name (uploads/ID)")
        upload = await asyncio.to_thread(self.store.get_upload, self.service, owner, match[1])
        if upload is None:
            raise errors.not_found(
                "upload", name, f"upload {name} not found: upload the file with UploadAudio"
            )
        if upload.state == "WRITING":
            raise errors.failed_precondition(
                f"upload {name} is still being written; wait for UploadAudio to return",
                "UPLOAD_INCOMPLETE",
            )
        if upload.state != "READY" or upload.expire_time <= time.time():
            expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upload.expire_time))
            raise errors.failed_precondition(
                f"upload {name} expired at {expired} (uploads are kept"
                f" {_span(self.settings.upload_ttl_s)}); upload the file again",
                "UPLOAD_EXPIRED",
            )
        return upload.id

    # -- files and URLs ------------------------------------------------------------------

    def _check_uri(self, uri: str, at: str) -> Path | str:
        """The resolved file under the root, or the URL to fetch; ApiError otherwise."""
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme == "file":
            return self._file(parsed, uri, at)
        if parsed.scheme in ("http", "https"):
            host = (parsed.hostname or "").lower()
            allowed = self.settings.allowed_url_hosts
            with_port = f"{host}:{parsed.port}" if parsed.port else host
            if not host or (host not in allowed and with_port not in allowed):
                raise errors.invalid_argument(
                    at,
                    f"host {host or '(none)'!r} is not allowed: jobs fetch URLs only from the"
                    " hosts the operator lists in SPEECHMESH_JOBS_ALLOWED_URL_HOSTS"
                    + (f" ({', '.join(allowed)})" if allowed else " (none are)")
                    + "; upload the file with UploadAudio instead",
                )
            return uri
        raise errors.invalid_argument(
            at, f"{uri[:80]!r}: use a file:// path under the jobs file root or an https:// URL"
        )

    def _file(self, parsed: urllib.parse.SplitResult, uri: str, at: str) -> Path:
        root = self.settings.file_root
        if not root:
            raise errors.invalid_argument(
                at,
                "file:// inputs are off on this service (the operator sets"
                " SPEECHMESH_JOBS_FILE_ROOT); send the audio inline or upload it",
            )
        if parsed.netloc not in ("", "localhost"):
            raise errors.invalid_argument(at, f"file:// URIs name no host ({parsed.netloc!r})")
        path = urllib.parse.unquote(parsed.path)
        if ".." in Path(path).parts:
            raise errors.invalid_argument(at, f"{path!r}: `..` is not allowed in file paths")
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            raise errors.invalid_argument(
                at, f"{path!r} is outside the jobs file root {root}; give a path under it"
            )
        if not os.path.isfile(real):
            raise errors.not_found("file", uri, f"no file {path} under the jobs file root")
        return Path(real)

    def _read_file(self, path: Path, uri: str) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.settings.upload_max_bytes:
                raise errors.invalid_argument(
                    "uri", f"{uri} is {size} bytes; the limit is {self.settings.upload_max_mb} MiB"
                )
            return path.read_bytes()
        except OSError as error:
            raise errors.not_found("file", uri, f"cannot read {uri}: {error.strerror}") from None

    def _fetch(self, url: str) -> bytes:
        opener = urllib.request.build_opener(_AllowedRedirects(self))
        limit = self.settings.upload_max_bytes
        try:
            with opener.open(url, timeout=URL_TIMEOUT_S) as response:
                data = response.read(limit + 1)
        except errors.ApiError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise errors.unavailable(
                f"could not fetch {url[:200]}: {reason}", 10.0, "INPUT_UNREACHABLE"
            ) from None
        if len(data) > limit:
            raise errors.invalid_argument(
                "uri", f"{url[:200]} is larger than {self.settings.upload_max_mb} MiB"
            )
        return data


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:.0f} s"


class _AllowedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another allowed URL."""

    def __init__(self, inputs: Inputs):
        super().__init__()
        self.inputs = inputs

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.inputs._check_uri(newurl, "uri")
        return super().redirect_request(req, fp, code, msg, headers, newurl)
