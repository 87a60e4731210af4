"""A gRPC health probe for container health checks: `python -m speechmesh.runtime.healthcheck`.

Docker's HEALTHCHECK and compose's `healthcheck` run a command, and a gRPC port cannot be
probed with curl, so this asks `grpc.health.v1.Health/Check` and exits 0 only on SERVING
(1 on NOT_SERVING, UNKNOWN or no answer; 2 on bad arguments). The services answer NOT_SERVING
until their models are loaded and warmed up, so "healthy" means "ready for traffic".

    python -m speechmesh.runtime.healthcheck --service asr      # port from SPEECHMESH_ASR_PORT
    python -m speechmesh.runtime.healthcheck --port 50052

`--service` reads the port the way the service itself does (its settings class, so the same
SPEECHMESH_<SERVICE>_PORT variable and default), so a container whose port was changed by the
environment is still probed where it listens. It imports no model code: one probe costs about
the start of a Python interpreter with grpc.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.runtime.registry import SERVICES


def service_port(service: str) -> int:
    """The gRPC port `speechmesh serve SERVICE` listens on, from its settings (env included)."""
    return SERVICES[service].settings_class()().port


def check(host: str, port: int, name: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(serving, what was seen) for one Health/Check of `name` ("" is the whole server)."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=timeout
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            return False, f"{target}: no answer ({code.name if code else error})"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmesh.runtime.healthcheck", description=__doc__.splitlines()[0]
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="gRPC port to probe")
    where.add_argument(
        "--service", choices=sorted(SERVICES), help="probe this service's configured port"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--name", default="", help="health service name to check (default '': the server)"
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else service_port(args.service)
    serving, seen = check(args.host, port, args.name, args.timeout)
    print(seen)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
