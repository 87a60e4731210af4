"""What a stored voice is: its id rules, what a caller says about a new voice, the metadata a
voice shows, and the errors of the store (each one's str() is a message fit for API callers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

VOICE_ID_PATTERN = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_DISPLAY_NAME_CHARS = 128


# -- errors --------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class VoiceStoreError(Exception):
    """Base of the store's errors; str() is a message fit for API callers."""


class InvalidArgumentError(VoiceStoreError, ValueError):
    """A bad argument; `field` names it ("voice_id", "page_token", "page_size", ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidVoiceIdError(InvalidArgumentError):
    """A voice id that is not an RFC 1034 label; `voice_id` is the id given."""

    def __init__(self, voice_id: str):
        super().__init__(
            "voice_id",
            f"voice id {_clip(voice_id)!r} is not valid: use 1 to 63 lowercase letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen",
        )
        self.voice_id = voice_id


class InvalidPageTokenError(InvalidArgumentError):
    """A page token this store did not issue for this owner."""

    def __init__(self, message: str = "page_token is not valid: send a next_page_token as given"):
        super().__init__("page_token", message)


class VoiceExistsError(VoiceStoreError):
    """The owner already has a voice with this id (ALREADY_EXISTS); `voice_id`, `name`."""

    def __init__(self, voice_id: str):
        super().__init__(f"voice voices/{voice_id} already exists")
        self.voice_id = voice_id
        self.name = f"voices/{voice_id}"


class VoiceNotFoundError(VoiceStoreError, LookupError):
    """No such voice for this owner (NOT_FOUND); `voice_id`, `name`."""

    def __init__(self, voice_id: str):
        super().__init__(f"voice voices/{voice_id} not found")
        self.voice_id = voice_id
        self.name = f"voices/{voice_id}"


class VoiceDataError(VoiceStoreError):
    """A listed voice whose files could not be read (a disk fault; DATA_LOSS / INTERNAL)."""

    def __init__(self, voice_id: str, detail: str):
        super().__init__(f"the stored data of voice voices/{voice_id} cannot be read: {detail}")
        self.voice_id = voice_id
        self.name = f"voices/{voice_id}"


# -- values --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VoiceMeta:
    """What a caller says about a new voice (the engine family comes from the prompt)."""

    #: The exact words of the reference recording (checked by the caller, see check_transcript).
    transcript: str
    #: BCP-47 language of the recording.
    language: str = ""
    #: Human-readable label, at most 128 characters.
    display_name: str = ""
    #: Name of the model the voice is prepared for.
    model: str = ""
    #: Identity owning the voice; "" is anonymous.
    owner: str = ""


@dataclasses.dataclass(frozen=True)
class StoredVoice:
    """A stored voice's metadata, as the Voice resource shows it."""

    voice_id: str
    owner: str
    display_name: str
    language: str
    transcript: str
    model: str
    #: Engine family of the prompt, e.g. "csm".
    engine: str
    #: Length of the stored reference recording, seconds.
    reference_seconds: float
    #: Sample rate of the stored reference recording, Hz.
    reference_sample_rate: int
    #: When the voice was created, UTC (microsecond precision).
    create_time: dt.datetime

    @property
    def name(self) -> str:
        """Resource name, "voices/{voice_id}"."""
        return f"voices/{self.voice_id}"


def check_voice_id(voice_id: str) -> str:
    """The id if it is an RFC 1034 label (1-63 of [a-z0-9-], letter first, no hyphen last)."""
    if not isinstance(voice_id, str) or not VOICE_ID_PATTERN.fullmatch(voice_id):
        raise InvalidVoiceIdError(str(voice_id))
    return voice_id
