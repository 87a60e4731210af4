"""Generate Python stubs (with .pyi) and the Envoy descriptor set from protos/.

Python modules land beside the hand-written code of each service
(services/asr/v1/asr_pb2.py is importable as speechmesh.asr.v1.asr_pb2); the
shared packages speechmesh.audio.v1 and speechmesh.common.v1 have folders of
their own (services/audio/, services/common/) that hold generated code only.
The descriptor set (imports and source info included) lands in build/: Envoy's
transcoder reads it, so every proto under protos/ is compiled into it.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
PACKAGE_DIR = ROOT / "services"
DESCRIPTOR_SET = ROOT / "build" / "speechmesh.pb"


def _well_known_include() -> str:
    import grpc_tools

    return str(pathlib.Path(grpc_tools.__file__).parent / "_proto")


def proto_sources() -> list[str]:
    """Every file under protos/, relative to it, sorted."""
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def run_protoc(*outputs: str) -> bool:
    """protoc on every file under protos/ with `outputs` (its `--*_out=` options); a descriptor
    set it writes includes imports and source info. True when protoc succeeded."""
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{THIRD_PARTY}",
        f"-I{_well_known_include()}",
        *outputs,
        "--include_imports",
        "--include_source_info",
        *proto_sources(),
    ]
    return protoc.main(args) == 0


def write_descriptor_set(out: pathlib.Path) -> None:
    """The descriptor set of every file under protos/ into `out`, as main builds
    build/speechmesh.pb; SystemExit when protoc fails (tools/gen_api_docs.py and
    tools/gen_gateway_config.py compile theirs with it)."""
    if not run_protoc(f"--descriptor_set_out={out}"):
        raise SystemExit("protoc failed on protos/")


def main() -> int:
    sources = proto_sources()
    DESCRIPTOR_SET.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not run_protoc(
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
        ):
            return 1
        generated = pathlib.Path(tmp) / "speechmesh"
        for src in generated.rglob("*"):
            if src.is_dir():
                continue
            dest = PACKAGE_DIR / src.relative_to(generated)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        # Every generated folder is a regular package.
        for folder in generated.rglob("*"):
            if folder.is_dir():
                init = PACKAGE_DIR / folder.relative_to(generated) / "__init__.py"
                init.touch(exist_ok=True)
    print(f"generated {len(sources)} protos -> services/*/v1, {DESCRIPTOR_SET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
