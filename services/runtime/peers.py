"""The other services of the suite that a service calls, at addresses from its settings.

Every service has one `peers` setting (SPEECHMESH_<SERVICE>_PEERS): NAME=HOST:PORT pairs
separated by commas, each NAME a service of the registry (speechmesh.runtime.registry), e.g.
`SPEECHMESH_ASR_PEERS=translate=translate:50052,tts=tts:50053`. `speechmesh up`,
docker-compose.yml and deploy/kubernetes set them. The ASR service asks its peers for their
models to answer OpenAI's `/v1/models` for the whole suite; a service that composes others
(translate over ASR and TTS) opens its channels here too.

Channels open on first use and close with the service. Peers calls go straight to the peer, not
through the gateway: they are the suite talking to itself. With tracing on, a channel carries
the client interceptor of speechmesh.runtime.tracing: a CLIENT span per call, whose
`traceparent` goes to the peer.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import Mapping

import grpc
import structlog
from google.protobuf import message_factory

from speechmesh.runtime import tracing
from speechmesh.runtime.registry import SERVICES

log = structlog.get_logger("speechmesh.peers")

#: Largest answer a peer may send (the translate cascade receives speech), bytes.
PEER_MESSAGE_BYTES = 256 * 1024 * 1024
#: How long one call to a peer may take before it counts as down, in seconds.
TIMEOUT_S = 2.0


def parse_peers(value: object) -> dict[str, str]:
    """{service name: "host:port"} from NAME=HOST:PORT pairs separated by commas (or from a
    mapping); ValueError, naming the pair, for an unknown service or a bad address."""
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, address = item.partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"{item.strip()!r} is not NAME=HOST:PORT")
            if name in pairs:
                raise ValueError(f"{name} is given twice")
            pairs[name] = address.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ValueError("must be NAME=HOST:PORT pairs separated by commas")
    for name, address in value.items():
        if name not in SERVICES:
            raise ValueError(f"{name!r} is no service of the suite ({', '.join(SERVICES)})")
        host, sep, port = str(address).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{name}: the address must be HOST:PORT, got {address!r}")
    return {name: str(address) for name, address in value.items()}


@functools.cache
def _list_models_call(service: str) -> tuple[str, type, type]:
    """(method path, request class, response class) of a service's ListModels, read from its
    generated descriptors (speechmesh.<name>.v1.<name>_pb2), so every service of the registry
    is asked the same way whatever its message layout."""
    proto_service = SERVICES[service].proto_service
    package, _, name = proto_service.rpartition(".")
    module = importlib.import_module(f"{package}.{service}_pb2")
    method = module.DESCRIPTOR.services_by_name[name].methods_by_name["ListModels"]
    return (
        f"/{proto_service}/ListModels",
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )


class Peers:
    """Channels to the peers a service's settings name, opened on first use."""

    def __init__(self, addresses: Mapping[str, str]):
        self.addresses = parse_peers(addresses)
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def names(self) -> list[str]:
        """The peers, in the registry's order."""
        return [name for name in SERVICES if name in self.addresses]

    def channel(self, name: str) -> grpc.aio.Channel:
        """The channel to peer `name`; KeyError when the settings name no such peer."""
        if name not in self._channels:
            self._channels[name] = grpc.aio.insecure_channel(
                self.addresses[name],
                options=[("grpc.max_receive_message_length", PEER_MESSAGE_BYTES)],
                interceptors=tracing.client_interceptors() or None,
            )
        return self._channels[name]

    async def model_names(self, timeout_s: float = TIMEOUT_S) -> dict[str, list[str]]:
        """The names of the models each peer serves (ListModels), asked at once. A peer that
        does not answer within `timeout_s` is left out and logged: never an error."""
        answers = await asyncio.gather(*(self._model_names(n, timeout_s) for n in self.names))
        return {
            name: answer
            for name, answer in zip(self.names, answers, strict=True)
            if answer is not None
        }

    async def _model_names(self, name: str, timeout_s: float) -> list[str] | None:
        path, request_class, response_class = _list_models_call(name)
        call = self.channel(name).unary_unary(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            reply = await call(request_class(), timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "peer.unavailable",
                peer=name,
                address=self.addresses[name],
                code=error.code().name,
                error=error.details(),
            )
            return None
        return [model.name for model in reply.models]

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
