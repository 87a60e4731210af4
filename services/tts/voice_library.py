"""Stored voices as API resources, `voices/{voice}` per owner (no protos here).

Creating a voice checks what the caller says about it, normalises the reference recording and
has a cloning model prepare its prompt once; the voice store (`voices`) keeps all of it on disk.
Each owner sees only their own voices. Every mistake is an ApiError naming the request field
(CreateVoice's and UploadVoice's fields are the same).
"""

from __future__ import annotations

import asyncio
import dataclasses

from speechmesh.dsp.audio import RawFormat
from speechmesh.runtime import errors
from speechmesh.tts.resolver import (
    VoiceResolver,
    check_reference_transcript,
    check_voice_id,
    parse_voice_name,
    speaks,
    voice_not_found,
)
from speechmesh.tts.voices import records


@dataclasses.dataclass(frozen=True)
class NewVoice:
    """A voice to create: what the caller says about it, and its reference recording."""

    #: The id to give it; "": a random one.
    voice_id: str
    #: The exact words of the recording.
    transcript: str
    #: The recording as sent (a container, or raw samples in `raw`).
    audio: bytes
    #: Raw sample format; None: detect the container.
    raw: RawFormat | None = None
    display_name: str = ""
    #: The model to prepare it with; "": the default if it clones, else the first that does.
    model: str = ""
    #: BCP-47 language of the recording; "": the model's first.
    language: str = ""


class VoiceLibrary:
    """Creates, reads, lists and deletes an owner's stored voices."""

    def __init__(self, resolver: VoiceResolver):
        self.resolver = resolver

    async def create(self, new: NewVoice, owner: str) -> records.StoredVoice:
        """Stores `new` for `owner`; ALREADY_EXISTS when the owner has its id."""
        if new.voice_id:
            check_voice_id(new.voice_id, "voice_id")
        transcript = check_reference_transcript(new.transcript, "voice.transcript")
        if len(new.display_name) > records.MAX_DISPLAY_NAME_CHARS:
            raise errors.invalid_argument(
                "voice.display_name",
                f"is {len(new.display_name)} characters; at most {records.MAX_DISPLAY_NAME_CHARS}",
            )
        resolver = self.resolver
        model = resolver.models.cloning(new.model, "voice.model")
        language = speaks(model, new.language, "voice.language_code")
        audio = await resolver.reference_audio(model, new.audio, new.raw, "reference_audio")
        prompt = await resolver.prepare(model, audio, transcript, language, "voice.")
        meta = records.VoiceMeta(
            transcript=transcript,
            language=language,
            display_name=new.display_name,
            model=model.name,
            owner=owner,
        )
        try:
            return await asyncio.to_thread(
                resolver.store.create,
                new.voice_id or None,
                meta,
                audio,
                model.engine.sample_rate,
                prompt,
            )
        except records.VoiceExistsError as error:
            raise errors.already_exists(
                "speechmesh.dev/Voice",
                error.name,
                f"{error.name} already exists; delete it first or choose another voice_id",
            ) from None
        except records.InvalidArgumentError as error:
            raise errors.invalid_argument(error.field, error.message) from None

    async def get(self, name: str, owner: str) -> records.StoredVoice:
        """The owner's voice of resource name `name`."""
        return await self.resolver.stored_voice(parse_voice_name(name, "name"), owner)

    async def list(
        self, page_size: int, page_token: str, owner: str
    ) -> tuple[list[records.StoredVoice], str]:
        """A page of the owner's voices, oldest first, and the next page's token."""
        if page_size < 0:
            raise errors.invalid_argument(
                "page_size", f"is {page_size}; use 0 (default 50) to 1000"
            )
        try:
            return await asyncio.to_thread(self.resolver.store.list, page_size, page_token, owner)
        except records.InvalidArgumentError as error:
            raise errors.invalid_argument(error.field, error.message) from None

    async def delete(self, name: str, owner: str) -> None:
        """Deletes the owner's voice of resource name `name`."""
        voice_id = parse_voice_name(name, "name")
        try:
            await asyncio.to_thread(self.resolver.store.delete, voice_id, owner)
        except records.VoiceNotFoundError as error:
            raise voice_not_found(error) from None
