"""speechmesh: gRPC speech services (recognition, translation, synthesis) behind Envoy."""

__version__ = "0.1.0"
