"""The committed protobuf and gRPC modules are exactly what scripts/gen_proto.py writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_DIR = ROOT / "proto" / "llmping" / "v1"
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
FIX = "run `python scripts/gen_proto.py` and commit the regenerated files"


def generated_names(folder: Path) -> set[str]:
    return {path.name for pattern in GENERATED_PATTERNS for path in folder.glob(pattern)}


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("gen_proto")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"gen_proto.py failed:\n{result.stdout}\n{result.stderr}"
    return out_dir / "llmping" / "v1"


def test_generator_writes_expected_files(generated_dir: Path) -> None:
    assert generated_names(generated_dir) == {
        "llmping_pb2.py",
        "llmping_pb2.pyi",
        "llmping_pb2_grpc.py",
    }


def test_committed_file_set_matches(generated_dir: Path) -> None:
    assert generated_names(COMMITTED_DIR) == generated_names(generated_dir), FIX


@pytest.mark.parametrize("name", ["llmping_pb2.py", "llmping_pb2.pyi", "llmping_pb2_grpc.py"])
def test_committed_module_is_current(generated_dir: Path, name: str) -> None:
    committed = (COMMITTED_DIR / name).read_bytes()
    generated = (generated_dir / name).read_bytes()
    assert committed == generated, f"proto/llmping/v1/{name} is out of date, {FIX}"
