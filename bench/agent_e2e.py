"""Agent ceiling through the real command line: controller, ``llmping agent``, ``llmping run``.

bench/agent_ceiling.py runs the agent runtime in-process. This script runs the
product as a user would, so the figure also pays for gRPC, for result batches to the
controller and for the controller's SQLite writes:

- nginx serves the static 64-chunk event stream (as in agent_ceiling.py) on core 0;
- ``llmping controller`` runs on core 0 too, with a temporary SQLite file;
- ``llmping agent --processes N`` runs on core 1 for N = 1, on both cores for N >= 2;
- ``llmping run`` submits a closed-loop plan (``--concurrency`` split over the agent
  processes, ``--duration-s`` after ``--warmup-s``) and prints the report as JSON.

The figure is the report's throughput_rps: successful non-warm-up responses over the
time from the first start to the last end, plus each agent's diagnosis verdict.

Run:
    python bench/agent_e2e.py --processes 1,2 --concurrency 64 --duration-s 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import harness

LLMPING = shutil.which("llmping") or str(Path(sys.executable).parent / "llmping")

PLAN_TEMPLATE = """\
name: agent-e2e-ceiling
providers:
  - name: nginx
    kind: openai_compatible
    base_url: {base_url}/v1
    model: {model}
request:
  prompt: Write a 100-character essay.
  max_tokens: 100
load:
  mode: closed
  concurrency: {concurrency}
  duration_s: {total_s}
  warmup_s: {warmup_s}
targets:
  - bench
"""


@contextlib.contextmanager
def controller(folder: Path, core: int | None) -> Iterator[str]:
    """Start ``llmping controller`` on a free port and yield its address."""
    command = [LLMPING, "controller", "--listen", "127.0.0.1:0", "--db", str(folder / "bench.db")]
    process = subprocess.Popen(
        harness.pinned(command, core),
        stdout=subprocess.PIPE,
        stderr=(folder / "controller.log").open("w"),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        prefix = "llmping controller listening on "
        if not line.startswith(prefix):
            raise RuntimeError(f"the controller did not start: {line!r}, see {folder}")
        yield line[len(prefix) :]
    finally:
        harness.stop_process(process)


@contextlib.contextmanager
def agents(address: str, processes: int, folder: Path, cores: str | None) -> Iterator[int]:
    """Start ``llmping agent --processes N`` and wait until every process registered."""
    command = [LLMPING, "agent", "--controller", address, "--region", "bench"]
    command += ["--processes", str(processes), "--log-level", "warning"]
    if cores is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cores, *command]
    log_file = (folder / f"agent-{processes}.log").open("w")
    process = subprocess.Popen(command, stdout=log_file, stderr=log_file)
    try:
        wait_for_agents(address, processes)
        yield process.pid
    finally:
        harness.stop_process(process)
        log_file.close()


def wait_for_agents(address: str, count: int, timeout_s: float = 30.0) -> None:
    """Poll ``llmping agents`` until ``count`` agents are connected."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = subprocess.run(
            [LLMPING, "agents", "--format", "json", "--controller", address],
            capture_output=True,
            text=True,
        )
        if listed.returncode == 0 and len(json.loads(listed.stdout or "[]")) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} agents did not connect within {timeout_s} s")
        time.sleep(0.2)


def run_plan(address: str, plan_path: Path) -> dict[str, object]:
    """Run the plan with ``llmping run --format json`` and return the report."""
    command = [LLMPING, "run", str(plan_path), "--format", "json", "--no-progress"]
    command += ["--controller", address]
    completed = subprocess.run(command, capture_output=True, text=True)
    if not completed.stdout.strip():
        message = f"llmping run printed no report ({completed.returncode}): {completed.stderr}"
        raise RuntimeError(message)
    return dict(json.loads(completed.stdout))


def print_report(processes: int, report: dict[str, object]) -> None:
    summaries = report.get("summaries") or []
    assert isinstance(summaries, list)
    for summary in summaries:
        e2e_p50_ms = summary.get("e2e_ms", {}).get("p50", 0)
        print(
            f"llmping agent --processes {processes}: {summary.get('throughput_rps', 0):,.0f} "
            f"responses/s ({summary.get('requests', 0)} requests, "
            f"{summary.get('errors', 0)} errors, e2e p50 {e2e_p50_ms:.2f} ms)"
        )
    diagnoses = report.get("agent_diagnoses") or []
    assert isinstance(diagnoses, list)
    for entry in diagnoses:
        diagnosis = entry.get("diagnosis", {})
        print(f"  agent {entry.get('agent_id')}: verdict {diagnosis.get('verdict', '')!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Agent ceiling through llmping's command line.")
    parser.add_argument("--processes", default="1,2", help="comma-separated agent process counts")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop workers in total")
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds")
    parser.add_argument(
        "--warmup-s", type=float, default=2.0, help="seconds left out before measuring"
    )
    args = parser.parse_args()

    server_core, client_core = harness.default_cores()
    harness.print_machine_info()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(harness.wait_for_idle(), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="llmping-bench-e2e-") as tmp,
        harness.nginx_server(harness.build_event_stream(64), server_core) as server,
        controller(Path(tmp), server_core) as address,
    ):
        plan_path = Path(tmp) / "plan.yaml"
        plan_path.write_text(
            PLAN_TEMPLATE.format(
                base_url=server.url,
                model=harness.BENCH_MODEL,
                concurrency=args.concurrency,
                total_s=args.warmup_s + args.duration_s,
                warmup_s=args.warmup_s,
            )
        )
        for processes in [int(part) for part in args.processes.split(",")]:
            cores = str(client_core) if processes == 1 and client_core is not None else None
            with agents(address, processes, Path(tmp), cores) as agent_pid:
                witness = harness.LoadWitness()
                cpu_before_s = harness.tree_cpu_seconds(agent_pid)
                started_ns = time.perf_counter_ns()
                report = run_plan(address, plan_path)
                wall_s = (time.perf_counter_ns() - started_ns) / 1e9
                cpu_s = harness.tree_cpu_seconds(agent_pid) - cpu_before_s
                print_report(processes, report)
                print(
                    f"  agent processes used {cpu_s:.1f} CPU s in {wall_s:.1f} s "
                    f"({100 * cpu_s / wall_s:.0f}% of one core, submission and start delay "
                    f"included); {witness.summary().split(';')[0]}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
