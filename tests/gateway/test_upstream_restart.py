"""An upstream killed mid-run: the gateway answers UNAVAILABLE (503 for REST) for that service
only, and serves it again once `speechmesh up` has started it again and its health check says
SERVING."""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc


def test_killed_upstream_is_unavailable_then_recovers(up):
    gateway = up.gateway
    assert gateway.get("/v1/asr/models").status == 200
    pid = up.pids()["asr"]
    mark = len(up.lines)
    os.kill(pid, signal.SIGKILL)

    # While it is down: REST 503 with a google.rpc.Status body, gRPC UNAVAILABLE.
    down = gateway.get("/v1/asr/models")
    assert down.status == 503, down.body
    assert down.json()["code"] == 14
    with grpc.insecure_channel(gateway.target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            asr_pb2_grpc.AsrServiceStub(channel).ListModels(asr_pb2.ListModelsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # The other service is not affected.
    assert gateway.get("/v1/translate/models").status == 200

    up.wait_line(r"speechmesh up: asr exited with code -9; starting it again", start=mark)
    new_pid = int(
        up.wait_line(r"speechmesh up: started asr \(pid \d+\)", start=mark).split("pid ")[1][:-1]
    )
    assert new_pid != pid
    deadline = time.monotonic() + 90
    status = 0
    while time.monotonic() < deadline:
        status = gateway.get("/v1/asr/models").status
        if status == 200:
            break
        assert status == 503
        time.sleep(0.5)
    assert status == 200
