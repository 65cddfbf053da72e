"""TLS and mutual TLS between real controllers, the CLI and agents, all on 127.0.0.1.

Each test serves a controller in this process on port 0. The CLI runs in a worker
thread through click's CliRunner, and agents run as Agent objects on the test's loop,
so these tests take well under a second each. tests/cli/test_cli_tls.py covers the
same paths with every role as its own process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from llmping.agent.app import Agent, AgentConfig
from llmping.agent.connection import Backoff
from llmping.agent.tracing import AgentTracing
from llmping.cli.controller_cmd import check_exposure
from llmping.errors import InputError
from llmping.tls import ClientTls, ClientTlsOptions, ServerTls, server_speaks_tls
from llmping.v1 import llmping_pb2 as pb

InvokeCli = Callable[..., Awaitable[Result]]
TOKEN = "tls-test-token"
FAST_BACKOFF = Backoff(initial_s=0.05, max_s=0.2)
WAIT_TIMEOUT_S = 10.0
LLMPING = [sys.executable, "-P", "-c", "from llmping.cli.main import main; main()"]
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def client_flags(pki: Any, with_certificate: bool = True) -> list[str]:
    flags = ["--tls-ca", str(pki.ca_cert)]
    if with_certificate:
        flags += ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    return flags


def client_tls(pki: Any, with_certificate: bool = True, ca: Any = None) -> ClientTls:
    options = ClientTlsOptions(
        ca_path=ca or pki.ca_cert,
        cert_path=pki.client_cert if with_certificate else None,
        key_path=pki.client_key if with_certificate else None,
    )
    tls = options.load()
    assert tls is not None
    return tls


async def wait_until(condition: Callable[[], bool], description: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_TIMEOUT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {WAIT_TIMEOUT_S:g} s waiting for {description}")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------
# The CLI.
# ---------------------------------------------------------------------------


async def test_cli_over_tls(
    start_controller: Any, server_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(server_tls)

    result = await invoke_cli(
        "agents", "--controller", controller.address, *client_flags(tls_pki, False)
    )

    assert result.exit_code == 0, result.output
    assert "0 agents connected" in result.stdout


async def test_cli_over_mutual_tls_with_token(
    start_controller: Any, mutual_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(mutual_tls, token=TOKEN)
    flags = ["--controller", controller.address, *client_flags(tls_pki)]

    accepted = await invoke_cli("runs", *flags, "--token", TOKEN)
    wrong_token = await invoke_cli("runs", *flags, "--token", "not-the-token")

    assert accepted.exit_code == 0, accepted.output
    assert "0 runs" in accepted.stdout
    # TLS does not replace the token check: both apply.
    assert wrong_token.exit_code == 2
    assert wrong_token.stderr == (
        f"error: the controller at {controller.address} rejected the missing or wrong token, "
        "pass the controller's token with --token or LLMPING_TOKEN\n"
    )


async def test_cli_tls_from_variables(
    start_controller: Any, mutual_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(mutual_tls)

    result = await invoke_cli(
        "agents",
        LLMPING_CONTROLLER=controller.address,
        LLMPING_TLS_CA=str(tls_pki.ca_cert),
        LLMPING_TLS_CERT=str(tls_pki.client_cert),
        LLMPING_TLS_KEY=str(tls_pki.client_key),
    )

    assert result.exit_code == 0, result.output


async def test_cli_without_certificate_rejected(
    start_controller: Any, mutual_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(mutual_tls)

    result = await invoke_cli(
        "agents", "--controller", controller.address, *client_flags(tls_pki, False)
    )

    assert result.exit_code == 3
    assert result.stderr.startswith("error: TLS connection to the controller failed")
    assert "it probably requires a client certificate (mutual TLS)" in result.stderr
    assert "--tls-cert and --tls-key" in result.stderr


async def test_cli_untrusted_certificate_rejected(
    start_controller: Any, mutual_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(mutual_tls)
    flags = ["--tls-ca", str(tls_pki.ca_cert)]
    flags += ["--tls-cert", str(tls_pki.other_client_cert)]
    flags += ["--tls-key", str(tls_pki.other_client_key)]

    result = await invoke_cli("agents", "--controller", controller.address, *flags)

    assert result.exit_code == 3
    assert "probably rejected the client certificate in --tls-cert" in result.stderr
    assert "--tls-client-ca" in result.stderr


async def test_cli_wrong_ca_rejected(
    start_controller: Any, server_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(server_tls)

    result = await invoke_cli(
        "agents", "--controller", controller.address, "--tls-ca", str(tls_pki.other_ca_cert)
    )

    assert result.exit_code == 3
    assert "the controller's certificate is not trusted" in result.stderr
    assert "check that the CA in --tls-ca signed the controller's --tls-cert" in result.stderr


async def test_cli_plaintext_to_tls_controller(
    start_controller: Any, server_tls: ServerTls, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(server_tls)

    result = await invoke_cli("agents", "--controller", controller.address)

    assert result.exit_code == 3
    assert (
        f"the controller at {controller.address} serves TLS and this client connected "
        "without it" in result.stderr
    )
    assert "pass --tls-ca" in result.stderr


async def test_cli_tls_to_plaintext_controller(
    start_controller: Any, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(None)

    result = await invoke_cli(
        "agents", "--controller", controller.address, *client_flags(tls_pki, False)
    )

    assert result.exit_code == 3
    assert f"the controller at {controller.address} does not serve TLS" in result.stderr


async def test_cli_plaintext_controller_down_is_not_tls(
    start_controller: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(None)
    address = controller.address
    await controller.stop()

    result = await invoke_cli("agents", "--controller", address)

    assert result.exit_code == 3
    assert "TLS" not in result.stderr
    assert f"cannot reach the controller at {address}" in result.stderr


async def test_cli_server_name_override(
    start_controller: Any, server_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(server_tls)
    flags = ["--controller", controller.address, *client_flags(tls_pki, False)]

    named = await invoke_cli("agents", *flags, "--tls-server-name", "localhost")
    unnamed = await invoke_cli("agents", *flags, "--tls-server-name", "controller.example")

    assert named.exit_code == 0, named.output
    assert unnamed.exit_code == 3
    assert (
        "the controller's certificate does not name 'controller.example' from "
        "--tls-server-name" in unnamed.stderr
    )


async def run_agents_with_default_roots(address: str, roots: Path) -> tuple[int, str, str]:
    """Run `llmping agents --tls` with gRPC's default roots read from ``roots``.

    gRPC reads its default roots once per process, so the command runs in its own,
    without any LLMPING_ variable and with gRPC's own log lines left off.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LLMPING_") and name != "GRPC_VERBOSITY"
    }
    environment["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(roots)
    process = await asyncio.create_subprocess_exec(
        *LLMPING,
        "agents",
        "--controller",
        address,
        "--tls",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT_TIMEOUT_S * 3)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_cli_tls_flag_uses_default_roots(
    start_controller: Any, server_tls: ServerTls, tls_pki: Any
) -> None:
    controller = await start_controller(server_tls)
    returncode, stdout, stderr = await run_agents_with_default_roots(
        controller.address, tls_pki.ca_cert
    )

    assert returncode == 0, stderr
    assert "0 agents connected" in stdout


# ---------------------------------------------------------------------------
# Agents.
# ---------------------------------------------------------------------------


def make_agent(address: str, agent_id: str, tls: ClientTls | None, token: str = "") -> Agent:
    config = AgentConfig(
        controller=address,
        region="tokyo",
        agent_id=agent_id,
        token=token or None,
        tls=tls,
        backoff=FAST_BACKOFF,
        shutdown_grace_s=0.5,
        tracing=False,
    )
    return Agent(config)


async def run_briefly(agent: Agent, until: Callable[[], bool], description: str) -> None:
    """Run ``agent`` until ``until`` returns True, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_until(lambda: until() or task.done(), description)
        if task.done():
            task.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_TIMEOUT_S)


async def test_agent_over_mutual_tls_registers(
    start_controller: Any, mutual_tls: ServerTls, tls_pki: Any
) -> None:
    controller = await start_controller(mutual_tls, token=TOKEN)
    agent = make_agent(controller.address, "tls-agent", client_tls(tls_pki), TOKEN)

    def registered() -> bool:
        return [s.agent_id for s in controller.registry.sessions()] == ["tls-agent"]

    await run_briefly(agent, registered, "the agent to register")

    assert agent.connection.sessions_established == 1


async def test_agent_without_certificate_logs_and_retries(
    start_controller: Any,
    mutual_tls: ServerTls,
    tls_pki: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmping.agent.connection")
    controller = await start_controller(mutual_tls)
    agent = make_agent(controller.address, "no-cert", client_tls(tls_pki, False))

    def retried() -> bool:
        return "TLS connection attempt 3 failed again" in caplog.text

    await run_briefly(agent, retried, "three failed TLS attempts")

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert (
        f"agent no-cert: TLS connection to controller at {controller.address} failed" in (errors[0])
    )
    assert "it probably requires a client certificate (mutual TLS)" in errors[0]
    assert "retrying with backoff" in errors[0]
    assert agent.connection.sessions_established == 0
    assert list(controller.registry.sessions()) == []


async def test_agent_wrong_ca_logs_reason(
    start_controller: Any,
    server_tls: ServerTls,
    tls_pki: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmping.agent.connection")
    controller = await start_controller(server_tls)
    tls = client_tls(tls_pki, False, tls_pki.other_ca_cert)
    agent = make_agent(controller.address, "wrong-ca", tls)

    await run_briefly(
        agent, lambda: "attempt 2 failed again" in caplog.text, "two failed TLS attempts"
    )

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "the controller's certificate is not trusted" in errors[0]


async def test_agent_plaintext_to_tls_controller(
    start_controller: Any, server_tls: ServerTls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmping.agent.connection")
    controller = await start_controller(server_tls)
    agent = make_agent(controller.address, "plain", None)

    await run_briefly(agent, lambda: "attempt 2 failed again" in caplog.text, "two failed attempts")

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "serves TLS and this client connected without it" in errors[0]


async def test_agent_reconnects_after_tls_fixed(
    start_controller: Any,
    server_tls: ServerTls,
    tls_pki: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmping.agent.connection")
    plaintext = await start_controller(None)
    address = plaintext.address
    agent = make_agent(address, "tls-later", client_tls(tls_pki, False))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_until(lambda: "does not serve TLS" in caplog.text, "the TLS error")
        # The same port now serves TLS, as after a controller restart with certificates.
        await plaintext.stop()
        secured = await start_controller(server_tls, listen=address)
        await wait_until(
            lambda: [s.agent_id for s in secured.registry.sessions()] == ["tls-later"],
            "the agent to register after the fix",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_TIMEOUT_S)


async def test_agent_spans_through_mutual_tls_controller(
    start_controller: Any,
    mutual_tls: ServerTls,
    tls_pki: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMPING_TRACES_VIA_CONTROLLER", "1")
    # With no OTLP endpoint of its own, the controller counts the spans it receives as
    # dropped, which is enough to see that they crossed the TLS connection.
    controller = await start_controller(mutual_tls)
    tracing = AgentTracing.from_env(
        "span-agent", {"region": "tokyo"}, controller.address, None, client_tls(tls_pki)
    )
    trace = tracing.start_assignment(
        pb.Assignment(assignment_id="a-1", run_id="r-1", plan=pb.Plan(name="spans"))
    )
    trace.end(pb.AssignmentUpdate.FINISHED)
    # shutdown() exports from its own thread; the loop must stay free to serve it.
    await asyncio.to_thread(tracing.shutdown)

    assert controller.telemetry is not None
    forwarder = controller.telemetry.forwarder
    await wait_until(lambda: forwarder.spans_dropped == 1, "the span at the controller")


# ---------------------------------------------------------------------------
# The probe and the exposure check.
# ---------------------------------------------------------------------------


async def test_probe_tells_tls_from_plaintext(
    start_controller: Any, server_tls: ServerTls, mutual_tls: ServerTls
) -> None:
    plain = await start_controller(None)
    tls = await start_controller(server_tls)
    mutual = await start_controller(mutual_tls)

    assert not await asyncio.to_thread(server_speaks_tls, plain.address)
    assert await asyncio.to_thread(server_speaks_tls, tls.address)
    assert await asyncio.to_thread(server_speaks_tls, mutual.address)


def test_open_listen_with_tls_does_not_warn(
    server_tls: ServerTls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    check_exposure("0.0.0.0:50051", TOKEN, False, server_tls)

    assert caplog.records == []


def test_open_listen_without_tls_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    check_exposure("0.0.0.0:50051", TOKEN, False, None)

    (warning,) = caplog.records
    assert "without TLS" in warning.getMessage()
    assert "pass --tls-cert and --tls-key" in warning.getMessage()


def test_open_listen_with_mutual_tls_needs_no_token(
    mutual_tls: ServerTls, server_tls: ServerTls
) -> None:
    # Client certificates authenticate agents and the CLI, so no token is needed.
    check_exposure("0.0.0.0:50051", "", False, mutual_tls)

    # TLS alone encrypts but lets anyone in, so the token is still required.
    with pytest.raises(InputError, match="require client certificates with --tls-client-ca"):
        check_exposure("0.0.0.0:50051", "", False, server_tls)


# The first characters of a gRPC C-core log line, such as
# "I1204 23:35:36.781686    1957 ssl_transport_security.cc:2563] Handshake failed".
C_CORE_LOG_LINE = re.compile(r"^[DIWEF]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]", re.MULTILINE)


async def test_cli_default_roots_untrusted_suggests_tls_ca(
    start_controller: Any, server_tls: ServerTls, tls_pki: Any
) -> None:
    controller = await start_controller(server_tls)
    # gRPC's default roots are swapped for a CA that did not sign the controller's
    # certificate, so the check fails without relying on the machine's CA bundle.
    returncode, _, stderr = await run_agents_with_default_roots(
        controller.address, tls_pki.other_ca_cert
    )

    assert returncode == 3, stderr
    assert stderr.startswith("error: TLS connection to the controller failed"), stderr
    assert "pass --tls-ca FILE with the CA that signed the controller's" in stderr
    assert C_CORE_LOG_LINE.search(stderr) is None, stderr


async def test_cli_server_certificate_as_client_certificate(
    start_controller: Any, mutual_tls: ServerTls, tls_pki: Any, invoke_cli: InvokeCli
) -> None:
    controller = await start_controller(mutual_tls)
    # The controller's certificate has only the serverAuth extended key usage.
    flags = ["--tls-ca", str(tls_pki.ca_cert)]
    flags += ["--tls-cert", str(tls_pki.server_cert), "--tls-key", str(tls_pki.server_key)]

    result = await invoke_cli("agents", "--controller", controller.address, *flags)

    assert result.exit_code == 3, result.output
    assert "extended key usage includes clientAuth" in result.stderr, result.stderr
