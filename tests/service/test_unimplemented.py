"""A method a servicer leaves to its generated base answers UNIMPLEMENTED, not INTERNAL."""

import grpc
import pytest

from speechmesh.runtime.server import ServiceApp
from speechmesh.runtime.settings import ServiceSettings
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.conftest import serving


async def _nothing() -> None:
    return None


async def test_generated_default_method_is_unimplemented():
    app = ServiceApp(
        name="tts",
        service_names=[tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name],
        register=lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(
            tts_pb2_grpc.TtsServiceServicer(), server
        ),
        load=_nothing,
        close=_nothing,
    )
    settings = ServiceSettings(host="127.0.0.1", port=0, metrics=False)
    async with serving(app, settings) as (_host, channel):
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ListModels(tts_pb2.ListModelsRequest(), timeout=10)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "not implemented" in error.value.details()
