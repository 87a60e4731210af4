"""The descriptor set the gateway transcodes with: loading it, trimming it for Envoy, and
reading the services and streaming methods of each `speechmesh.<area>.v1` package."""

from __future__ import annotations

import pathlib

from google.protobuf import descriptor_pb2


def load_descriptor_set(path: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    if not path.is_file():
        raise FileNotFoundError(
            f"descriptor set {path} not found: run `make protos` (python tools/gen_protos.py)"
            " or set SPEECHMESH_GATEWAY_DESCRIPTOR_SET"
        )
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(path.read_bytes())
    return files


def gateway_descriptor_set(files: descriptor_pb2.FileDescriptorSet) -> bytes:
    """The descriptor set Envoy transcodes with: the services' files without their comments,
    plus google.rpc.Status and its error details, so errors print as JSON with details."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    out = descriptor_pb2.FileDescriptorSet()
    out.CopyFrom(files)
    for file in out.file:
        file.ClearField("source_code_info")
    names = {file.name for file in out.file}
    for module in (any_pb2, duration_pb2, status_pb2, error_details_pb2):
        if module.DESCRIPTOR.name not in names:
            module.DESCRIPTOR.CopyToProto(out.file.add())
            names.add(module.DESCRIPTOR.name)
    return out.SerializeToString(deterministic=True)


def services_by_area(
    files: descriptor_pb2.FileDescriptorSet, areas: list[str]
) -> dict[str, list[tuple[str, list[str]]]]:
    """area -> [(full service name, [streaming method names])] for `speechmesh.<area>.v1`."""
    result: dict[str, list[tuple[str, list[str]]]] = {area: [] for area in areas}
    for file in files.file:
        parts = file.package.split(".")
        if len(parts) != 3 or parts[0] != "speechmesh" or parts[1] not in result:
            continue
        for service in file.service:
            streaming = [m.name for m in service.method if m.client_streaming or m.server_streaming]
            result[parts[1]].append((f"{file.package}.{service.name}", streaming))
    return result
