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


def main() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    includes = [f"-I{PROTOS}", f"-I{THIRD_PARTY}", f"-I{_well_known_include()}"]
    DESCRIPTOR_SET.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            *includes,
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            "--include_imports",
            "--include_source_info",
            *sources,
        ]
        if protoc.main(args) != 0:
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
