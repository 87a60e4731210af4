"""Small pieces every part of the Envoy bootstrap uses: typed-config keys and durations."""

from __future__ import annotations

#: The key of a typed config's type, and the prefix of every type URL.
TYPE = "@type"
TYPE_URL = "type.googleapis.com/"


def duration(seconds: float) -> str:
    """A google.protobuf.Duration in Envoy's YAML: "2s", "0.1s"."""
    return f"{seconds:g}s"
