"""Regenerate the protobuf and gRPC modules from proto/llmping/v1/llmping.proto.

Run `python scripts/gen_proto.py`; tests/test_proto_generated.py fails when the
committed modules differ from what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = ["llmping/v1/llmping.proto"]


def generate(out_dir: Path) -> None:
    """Write llmping_pb2.py, llmping_pb2.pyi and llmping_pb2_grpc.py under out_dir/llmping/v1."""
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    status = protoc.main(args)
    if status != 0:
        raise SystemExit(f"error: protoc failed with status {status}, see its output above")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT
    generate(out)
