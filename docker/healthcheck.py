"""Container health check for every llmping role, run by the image's HEALTHCHECK.

The role and its flags are read from the command line of PID 1 (the container's
``llmping ...`` process), or given as arguments when run by hand, for example
``python healthcheck.py agent --controller 127.0.0.1:50051``:

- controller: the gRPC health service on the --listen port returns SERVING. A controller
  that serves TLS (--tls-cert or LLMPING_CONTROLLER_TLS_CERT) is checked by a TLS
  handshake on that port instead, because a health call would need a CA that the
  container may not hold and, with mutual TLS, a client certificate;
- agent: the controller (--controller or LLMPING_CONTROLLER) lists an agent whose hostname
  is this host's, so the agent is connected and registered, not merely running. The
  call uses the agent's own TLS flags or LLMPING_TLS_* variables;
- simulate: the --listen port accepts a TCP connection;
- anything else (run, demo, report): healthy while it runs.

Exit status 0 means healthy, 1 unhealthy; the reason is printed on stderr.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmping.errors import LlmpingError
from llmping.tls import ClientTlsOptions, server_speaks_tls
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

TIMEOUT_S = 3.0
DEFAULTS = {
    "controller": "127.0.0.1:50051",
    "simulate": "127.0.0.1:8000",
}


def pid1_arguments() -> list[str]:
    """Return PID 1's arguments after the program name (``llmping``), or []."""
    try:
        return llmping_arguments(Path("/proc/1/cmdline").read_bytes())
    except OSError:
        return []


def llmping_arguments(cmdline: bytes) -> list[str]:
    """Return the words after ``llmping`` in a NUL-separated command line, or [].

    The console script runs as ``python /opt/llmping/bin/llmping ...``, so the program
    name is not always the first word.
    """
    words = [word.decode() for word in cmdline.split(b"\0") if word]
    for position, word in enumerate(words):
        if os.path.basename(word) == "llmping":
            return words[position + 1 :]
    return []


def option(arguments: list[str], name: str) -> str | None:
    """Return the value of ``--name VALUE`` or ``--name=VALUE``, or None."""
    for position, word in enumerate(arguments):
        if word == name and position + 1 < len(arguments):
            return arguments[position + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def setting(arguments: list[str], name: str, variable: str) -> str | None:
    """Return the value of option ``name``, else of environment variable ``variable``."""
    return option(arguments, name) or os.environ.get(variable) or None


def path_setting(arguments: list[str], name: str, variable: str) -> Path | None:
    value = setting(arguments, name, variable)
    return Path(value) if value else None


def client_tls(arguments: list[str]) -> ClientTlsOptions:
    """Return the agent's TLS settings, from its flags or its LLMPING_TLS_* variables."""
    enabled_text = os.environ.get("LLMPING_TLS", "").strip().lower()
    return ClientTlsOptions(
        enabled="--tls" in arguments or enabled_text in ("1", "true", "yes", "on"),
        ca_path=path_setting(arguments, "--tls-ca", "LLMPING_TLS_CA"),
        cert_path=path_setting(arguments, "--tls-cert", "LLMPING_TLS_CERT"),
        key_path=path_setting(arguments, "--tls-key", "LLMPING_TLS_KEY"),
        server_name=setting(arguments, "--tls-server-name", "LLMPING_TLS_SERVER_NAME"),
    )


def local_address(listen: str) -> str:
    """Turn a listen address into one to dial: a wildcard host becomes loopback."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def check_controller(arguments: list[str]) -> str:
    address = local_address(option(arguments, "--listen") or DEFAULTS["controller"])
    if setting(arguments, "--tls-cert", "LLMPING_CONTROLLER_TLS_CERT"):
        if not server_speaks_tls(address, TIMEOUT_S):
            return f"controller on {address} does not complete a TLS handshake"
        return ""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"controller on {address} is not serving"
    return ""


def check_agent(arguments: list[str]) -> str:
    address = option(arguments, "--controller") or os.environ.get("LLMPING_CONTROLLER")
    address = address or DEFAULTS["controller"]
    token = option(arguments, "--token") or os.environ.get("LLMPING_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    tls = client_tls(arguments).load()
    if tls is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, tls.credentials(), tls.channel_options())
    with channel:
        stub = pb_grpc.ControlServiceStub(channel)
        reply = stub.ListAgents(pb.ListAgentsRequest(), timeout=TIMEOUT_S, metadata=metadata)
    hostname = socket.gethostname()
    if not any(agent.hostname == hostname for agent in reply.agents):
        return f"no agent from host {hostname} is registered at controller {address}"
    return ""


def check_simulator(arguments: list[str]) -> str:
    host, _, port = local_address(option(arguments, "--listen") or DEFAULTS["simulate"]).rpartition(
        ":"
    )
    with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S):
        return ""


def main(argv: list[str]) -> int:
    arguments = argv or pid1_arguments()
    role = arguments[0] if arguments else ""
    checks = {"controller": check_controller, "agent": check_agent, "simulate": check_simulator}
    check = checks.get(role)
    if check is None:
        return 0
    try:
        problem = check(arguments)
    except (grpc.RpcError, OSError, ValueError, LlmpingError) as error:
        problem = f"{role} health check failed: {error}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
