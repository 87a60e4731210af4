"""The descriptor set the gateway transcodes with: loading it, trimming it for Envoy, and
reading the services and streaming methods of each `speechmesh.<area>.v1` package."""

from __future__ import annotations

import functools
import pathlib

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory


def read_descriptor_set(path: pathlib.Path) -> bytes:
    """The serialized descriptor set at `path` (build/speechmesh.pb from `make protos`)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"descriptor set {path} not found: run `make protos` (python tools/gen_protos.py)"
            " or set SPEECHMESH_GATEWAY_DESCRIPTOR_SET"
        )
    return path.read_bytes()


def load_descriptor_set(path: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(read_descriptor_set(path))


@functools.cache
def _plain_descriptor_set() -> type[message.Message]:
    """FileDescriptorSet from a pool of its own, which knows no custom options.

    A set parsed with the default pool keeps the options whose extension modules the process
    happens to have imported (google.api.field_behavior_pb2, resource_pb2, ...) as fields and
    the others as unknown fields, and serializing puts the two kinds in a different order: the
    bytes would depend on what else the process imported. Parsed here, every custom option stays
    as protoc wrote it.
    """
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto()
    descriptor_pb2.DESCRIPTOR.CopyToProto(file)
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("google.protobuf.FileDescriptorSet")
    )


def gateway_descriptor_set(data: bytes) -> bytes:
    """The descriptor set Envoy transcodes with, from a serialized one (`data`): the services'
    files without their comments, plus google.rpc.Status and its error details, so errors print
    as JSON with details. The same bytes whatever modules the process has imported."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    out = _plain_descriptor_set().FromString(data)
    for file in out.file:
        file.ClearField("source_code_info")
    names = {file.name for file in out.file}
    for module in (any_pb2, duration_pb2, status_pb2, error_details_pb2):
        if module.DESCRIPTOR.name not in names:
            extra = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(extra)
            out.file.add().MergeFromString(extra.SerializeToString())
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
