"""Render gateway/envoy.yaml: the Envoy bootstrap the gateway container runs by default.

    python tools/gen_gateway_config.py            # write gateway/envoy.yaml (`make gateway`)
    python tools/gen_gateway_config.py --check    # exit 1 when gateway/envoy.yaml is not current

The file is what `python -m speechmesh.gateway.container` writes in compose's `gateway-config`
service and the Kubernetes init container when no SPEECHMESH_GATEWAY_* variable is set: the
same functions (container_settings, render_container_yaml), every other setting at its
default. Its descriptor set is compiled from protos/ the way tools/gen_protos.py compiles
build/speechmesh.pb (the image's /opt/speechmesh/speechmesh.pb), so the file never lags the
protos; `--descriptor-set build/speechmesh.pb` reads a built one instead. Nothing in the file
depends on where it was rendered: the descriptor set's path is not in it, upstreams are the
service names, and the embedded descriptors are the same bytes whatever the process imported.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "gateway" / "envoy.yaml"
ENV_PREFIX = "SPEECHMESH_GATEWAY_"


def compile_descriptor_set(out: pathlib.Path) -> None:
    """protoc on every file under protos/ into `out`, as tools/gen_protos.py builds
    build/speechmesh.pb (imports and source info included)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import gen_protos

    gen_protos.write_descriptor_set(out)


def render(descriptor_set: pathlib.Path) -> str:
    """The container's bootstrap with the default settings and `descriptor_set`."""
    from speechmesh.gateway.container import container_settings, render_container_yaml

    # The defaults, whatever this shell has set; the settings read os.environ themselves.
    for name in [name for name in os.environ if name.upper().startswith(ENV_PREFIX)]:
        del os.environ[name]
    os.environ[ENV_PREFIX + "DESCRIPTOR_SET"] = str(descriptor_set)
    return render_container_yaml(container_settings())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--descriptor-set",
        type=pathlib.Path,
        help="read this descriptor set (e.g. build/speechmesh.pb) instead of compiling protos/",
    )
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be written"
    )
    args = parser.parse_args()
    if args.descriptor_set is not None:
        text = render(args.descriptor_set.resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            built = pathlib.Path(tmp) / "speechmesh.pb"
            compile_descriptor_set(built)
            text = render(built)
    sys.path.insert(0, str(ROOT / "tools"))
    from gen_api_docs import write_or_check

    return write_or_check(text, args.out.resolve(), args.check, "tools/gen_gateway_config.py")


if __name__ == "__main__":
    sys.exit(main())
