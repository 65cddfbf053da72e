"""`llmping demo` end to end: simulator, proxies, controller and agents on loopback.

The shanghai agent's proxy adds 35 ms more delay each way than the tokyo agent's, so
every provider's time to first token must read about 70 ms higher from shanghai.
"""

from __future__ import annotations

import re
import subprocess
import sys

DEMO_TIMEOUT_S = 60
TTFT_AVG = re.compile(r"TTFT avg (\d+(?:\.\d+)?)")


def run_demo() -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from llmping.cli.main import main; main()"]
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
