"""`llmping demo` end to end: simulator, proxies, controller and agents on loopback.

The shanghai agent's proxy adds 35 ms more delay each way than the tokyo agent's, so
every provider's time to first token must read about 70 ms higher from shanghai.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmping.cli import demo_cmd
from llmping.v1 import llmping_pb2 as pb

DEMO_TIMEOUT_S = 60
TTFT_AVG = re.compile(r"TTFT avg (\d+(?:\.\d+)?)")


def run_demo() -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-P", "-c", "from llmping.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "demo", "--duration-s", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        out, err = process.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # the demo stops its children on SIGTERM
        out, err = process.communicate(timeout=20)
        raise AssertionError(f"demo did not finish in {DEMO_TIMEOUT_S} s:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def ttft_by_provider(table: str) -> dict[str, tuple[float, float]]:
    """Read (shanghai, tokyo) TTFT averages from the rendered provider x target grid."""
    found: dict[str, tuple[float, float]] = {}
    provider = ""
    row_starts = False
    for line in table.splitlines():
        if line.startswith(("┡", "├")):
            row_starts = True  # the next line names the provider, the one after the model
            continue
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) != 5:
            continue
        if row_starts:
            provider, row_starts = cells[1], False
        shanghai, tokyo = TTFT_AVG.search(cells[2]), TTFT_AVG.search(cells[3])
        if shanghai and tokyo:
            found[provider] = (float(shanghai.group(1)), float(tokyo.group(1)))
    return found


def test_demo_shows_both_regions_and_their_difference() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    header = next(line for line in table.splitlines() if "┃ provider" in line)
    assert "shanghai" in header
    assert "tokyo" in header
    assert "N/A" in table  # the reasoner offers no gpt-4o
    assert "demo database:" in result.stderr

    ttft = ttft_by_provider(table)
    assert set(ttft) >= {"fast-relay", "official", "azure-style"}, table
    for provider in ("fast-relay", "official", "azure-style"):
        shanghai_ms, tokyo_ms = ttft[provider]
        assert shanghai_ms > tokyo_ms, f"{provider}: {shanghai_ms} <= {tokyo_ms}\n{table}"
    differences = [shanghai - tokyo for shanghai, tokyo in ttft.values()]
    # Expected 70 ms per provider; half of it leaves room for jitter over few requests.
    assert sum(differences) / len(differences) > 35, differences


# ---------------------------------------------------------------------------
# Child processes of the demo.
# ---------------------------------------------------------------------------


def write_decoy_package(folder: Path) -> None:
    """Put an `llmping` package in folder that fails on import, as a source checkout's would."""
    decoy = folder / "llmping"
    decoy.mkdir()
    (decoy / "__init__.py").write_text('raise ImportError("decoy llmping imported")\n', "utf-8")


def test_child_command_ignores_llmping_in_cwd(tmp_path: Path) -> None:
    write_decoy_package(tmp_path)
    result = subprocess.run(
        demo_cmd.llmping_command("controller", "--help"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "decoy" not in result.stderr
    assert "--listen" in result.stdout


def test_child_runs_in_the_demo_folder(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import os; print(os.getcwd())"]
    child = demo_cmd.Child("probe", command, tmp_path / "probe.log", False, tmp_path)
    child.process.wait(30)
    child.stop()
    assert (tmp_path / "probe.log").read_text("utf-8").strip() == str(tmp_path)


# ---------------------------------------------------------------------------
# How the demo ends.
# ---------------------------------------------------------------------------

SUBMITTED = re.compile(r"run (\S+) submitted to")


def test_epilogue_says_the_failed_threshold_is_intended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threshold = pb.Threshold(metric="error_rate", op="lt", value=0.05)
    report = pb.Report(
        run=pb.RunInfo(run_id="demo-1", state=pb.COMPLETED),
        threshold_results=[
            pb.ThresholdResult(
                threshold=threshold, provider="budget-relay", observed=0.08, passed=False
            )
        ],
    )

    demo_cmd.print_epilogue(report, "127.0.0.1:1", tmp_path, keep_running=False)

    err = capsys.readouterr().err
    assert "note: threshold failed: error_rate < 0.05 for budget-relay" in err
    assert "fails on purpose" in err
    assert "the demo exits 0" in err
    assert f"llmping controller --listen 127.0.0.1:50051 --db {tmp_path / 'demo.db'}" in err


def test_epilogue_without_failed_threshold_has_no_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = pb.Report(run=pb.RunInfo(run_id="demo-1", state=pb.COMPLETED))
    demo_cmd.print_epilogue(report, "127.0.0.1:1", tmp_path, keep_running=False)
    assert "on purpose" not in capsys.readouterr().err


def test_sigterm_stops_demo_with_143_and_report_hint(tmp_path: Path) -> None:
    stderr_path = tmp_path / "demo.err"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            demo_cmd.llmping_command("demo", "--duration-s", "30", "--no-progress"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        while not SUBMITTED.search(stderr_path.read_text("utf-8")):
            assert process.poll() is None, stderr_path.read_text("utf-8")
            assert time.monotonic() < deadline, "the demo never submitted its run"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(DEMO_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = stderr_path.read_text("utf-8")
    submitted = SUBMITTED.search(err)
    assert submitted is not None, err
    run_id = submitted.group(1)

    assert exit_code == 143, err
    assert f"interrupted by SIGTERM, cancelling run {run_id}" in err
    assert "llmping controller --listen 127.0.0.1:50051 --db " in err
    assert f"llmping report {run_id}" in err
    assert "demo interrupted, everything it started is stopped" in err
