"""The cascade's calls to the ASR and TTS services, with their errors made the caller's.

Calls go to the addresses of the translate service's peers setting (speechmesh.runtime.peers)
and carry the caller's identity in the gateway's identity header, so that a stored voice of the
TTS service is looked up in the caller's namespace; with SPEECHMESH_TRUSTED_HOPS=token they
also carry the hop proof, so that ASR and TTS believe that identity (speechmesh.runtime.identity;
under a mesh, the mesh vouches for this service instead). A peer that is not configured, or that
does not answer, is UNAVAILABLE naming it; any other error of a peer reaches the caller with
the peer's code and message, prefixed with the peer's name, and its details.

ListModels answers are kept for MODELS_TTL_S, so a call does not ask them each time.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import grpc
import numpy as np
import soundfile as sf
from google.rpc import error_details_pb2, status_pb2

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.audio.v1 import audio_pb2
from speechmesh.runtime import errors
from speechmesh.runtime.identity import HopTrust
from speechmesh.runtime.peers import Peers
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

#: How long a peer's ListModels answer is reused, seconds.
MODELS_TTL_S = 5.0
#: How long asking a peer for its models may take, seconds.
MODELS_TIMEOUT_S = 2.0
_TITLES = {"asr": "ASR", "tts": "TTS"}
_DETAIL_TYPES = (
    error_details_pb2.BadRequest,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.PreconditionFailure,
)
_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class Speech:
    """What the TTS service said: float32 mono samples at `sample_rate`, and its model."""

    samples: np.ndarray
    sample_rate: int
    model: str


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class CascadePeers:
    def __init__(self, peers: Peers, identity_header: str, hops: HopTrust | None = None):
        self.peers = peers
        self.identity_header = identity_header
        #: The hop proof the calls carry with an identity (token mode), else nothing.
        self.proof = (hops or HopTrust()).proof()
        self._models: dict[str, tuple[float, list]] = {}

    def missing(self, name: str) -> str | None:
        """Why peer `name` cannot be called (no address set), or None."""
        if name in self.peers.addresses:
            return None
        return (
            f"the cascade needs the {_TITLES[name]} service, and this service has no address"
            f" for it: set SPEECHMESH_TRANSLATE_PEERS (e.g. asr=asr:50051,tts=tts:50053)"
        )

    def _channel(self, name: str) -> grpc.aio.Channel:
        reason = self.missing(name)
        if reason is not None:
            raise errors.unavailable(reason, 30.0, "CASCADE_PEER_MISSING")
        return self.peers.channel(name)

    def _metadata(self, caller: str) -> tuple[tuple[str, str], ...]:
        return ((self.identity_header, caller), *self.proof) if caller else ()

    async def _call(self, name: str, method, request, caller: str, timeout: float | None = None):
        try:
            return await method(request, metadata=self._metadata(caller), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error(name, error) from None

    def _error(self, name: str, error: grpc.aio.AioRpcError) -> errors.ApiError:
        title, address = _TITLES[name], self.peers.addresses[name]
        if error.code() in _DOWN:
            return errors.unavailable(
                f"the {title} service at {address} does not answer ({error.code().name}:"
                f" {error.details()}); the cascade needs it, the direct path does not",
                5.0,
                "CASCADE_PEER_UNAVAILABLE",
            )
        return errors.ApiError(error.code(), f"{title} service: {error.details()}", _details(error))

    # -- models ------------------------------------------------------------

    async def models(self, name: str, caller: str = "") -> list:
        """The ModelInfo list of peer `name` ("asr" or "tts"), at most MODELS_TTL_S old."""
        cached = self._models.get(name)
        if cached is not None and time.monotonic() - cached[0] < MODELS_TTL_S:
            return cached[1]
        channel = self._channel(name)
        if name == "asr":
            method = asr_pb2_grpc.AsrServiceStub(channel).ListModels
            request = asr_pb2.ListModelsRequest()
        else:
            method = tts_pb2_grpc.TtsServiceStub(channel).ListModels
            request = tts_pb2.ListModelsRequest()
        reply = await self._call(name, method, request, caller, MODELS_TIMEOUT_S)
        models = list(reply.models)
        self._models[name] = (time.monotonic(), models)
        return models

    # -- ASR ---------------------------------------------------------------

    async def recognize(
        self, audio: np.ndarray, rate: int, config: asr_pb2.RecognitionConfig, caller: str
    ) -> asr_pb2.RecognizeResponse:
        stub = asr_pb2_grpc.AsrServiceStub(self._channel("asr"))
        request = asr_pb2.RecognizeRequest(audio=wav_bytes(audio, rate), config=config)
        return await self._call("asr", stub.Recognize, request, caller)

    # -- TTS ---------------------------------------------------------------

    async def get_voice(self, name: str, caller: str) -> tts_pb2.Voice:
        stub = tts_pb2_grpc.TtsServiceStub(self._channel("tts"))
        return await self._call("tts", stub.GetVoice, tts_pb2.GetVoiceRequest(name=name), caller)

    async def synthesize(self, text: str, config: tts_pb2.SynthesisConfig, caller: str) -> Speech:
        """`text` spoken as `config` asks (its output is set here: raw PCM at the model's
        rate)."""
        stub = tts_pb2_grpc.TtsServiceStub(self._channel("tts"))
        config.output_audio_config.CopyFrom(
            audio_pb2.OutputAudioConfig(encoding=audio_pb2.OUTPUT_ENCODING_PCM)
        )
        request = tts_pb2.SynthesizeRequest(text=text, config=config)
        reply = await self._call("tts", stub.Synthesize, request, caller)
        samples = np.frombuffer(reply.audio, dtype="<i2").astype(np.float32) / 32768.0
        return Speech(samples, reply.sample_rate_hertz, reply.model)


def _details(error: grpc.aio.AioRpcError) -> list:
    """The google.rpc details a peer's error carried, of the kinds the suite sends."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            found = []
            for packed in status.details:
                for kind in _DETAIL_TYPES:
                    if packed.Is(kind.DESCRIPTOR):
                        detail = kind()
                        packed.Unpack(detail)
                        found.append(detail)
            return found
    return []
