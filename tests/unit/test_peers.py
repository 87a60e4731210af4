"""speechmesh.runtime.peers: the peer-address setting, and ListModels of every peer over real
gRPC channels (a peer that is down is logged and left out)."""

from __future__ import annotations

import grpc
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from speechmesh.asr.config import AsrSettings
from speechmesh.runtime.peers import Peers, parse_peers
from speechmesh.translate.config import TranslateSettings
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.servers import free_port


def test_parse_peers():
    assert parse_peers("") == {}
    assert parse_peers(" translate=translate:50052 , tts=10.0.0.7:50053,") == {
        "translate": "translate:50052",
        "tts": "10.0.0.7:50053",
    }
    assert parse_peers("tts=[::1]:50053") == {"tts": "[::1]:50053"}
    assert parse_peers({"asr": "asr:50051"}) == {"asr": "asr:50051"}


@pytest.mark.parametrize(
    ("value", "mention"),
    [
        ("tts", "is not NAME=HOST:PORT"),
        ("tts=a:1,tts=b:2", "tts is given twice"),
        ("voices=a:1", "'voices' is no service of the suite (asr, translate, tts)"),
        ("tts=tts", "the address must be HOST:PORT, got 'tts'"),
        ("tts=tts:0", "got 'tts:0'"),
        ("tts=:50053", "got ':50053'"),
        (["tts=a:1"], "NAME=HOST:PORT pairs"),
    ],
)
def test_bad_peers_are_refused(value, mention):
    with pytest.raises(ValueError) as error:
        parse_peers(value)
    assert mention in str(error.value)


def test_every_service_reads_its_own_peers_variable(monkeypatch):
    monkeypatch.setenv("SPEECHMESH_ASR_PEERS", "translate=translate:50052,tts=tts:50053")
    monkeypatch.setenv("SPEECHMESH_TRANSLATE_PEERS", "asr=asr:50051")
    assert AsrSettings().peers == {"translate": "translate:50052", "tts": "tts:50053"}
    assert TranslateSettings().peers == {"asr": "asr:50051"}
    assert AsrSettings(peers="tts=a:1").peers == {"tts": "a:1"}  # a flag wins
    monkeypatch.setenv("SPEECHMESH_ASR_PEERS", "tts=nowhere")
    with pytest.raises(ValidationError, match="peers"):
        AsrSettings()


class TtsModels(tts_pb2_grpc.TtsServiceServicer):
    async def ListModels(self, request, context):
        return tts_pb2.ListModelsResponse(
            models=[tts_pb2.ModelInfo(name="csm-1b"), tts_pb2.ModelInfo(name="vits-en")]
        )


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"


async def test_model_names_of_the_peers_that_answer():
    server = grpc.aio.server()
    tts_pb2_grpc.add_TtsServiceServicer_to_server(TtsModels(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    peers = Peers({"tts": f"127.0.0.1:{port}", "translate": dead_address()})
    try:
        assert peers.names == ["translate", "tts"]  # the registry's order
        with capture_logs() as logs:
            assert await peers.model_names(timeout_s=5) == {"tts": ["csm-1b", "vits-en"]}
        (down,) = logs
        assert (down["event"], down["peer"], down["code"]) == (
            "peer.unavailable",
            "translate",
            "UNAVAILABLE",
        )
        assert down["log_level"] == "warning"
        assert peers.channel("tts") is peers.channel("tts")  # one channel per peer
        with pytest.raises(KeyError):
            peers.channel("asr")
    finally:
        await peers.close()
        await server.stop(0)
    assert await Peers({}).model_names() == {}
