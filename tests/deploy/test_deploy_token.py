"""Every deployed controller listens beyond loopback, so each one must get a token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def listen_of(arguments: list[str]) -> str:
    return arguments[arguments.index("--listen") + 1]


def test_compose_controller_has_token(compose: dict[str, Any]) -> None:
    controller = compose["services"]["controller"]

    assert listen_of(controller["command"]).startswith("0.0.0.0:")
    assert "--insecure-no-token" not in controller["command"]
    assert controller["environment"]["LLMPING_TOKEN"]


def test_k8s_controller_token_from_secret(repo: Path) -> None:
    text = (repo / "deploy" / "k8s" / "controller.yaml").read_text()
    (deployment,) = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    assert listen_of(container["args"]).startswith("0.0.0.0:")
    assert "--insecure-no-token" not in container["args"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["LLMPING_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "LLMPING_TOKEN"


def test_systemd_controller_env_has_token(repo: Path) -> None:
    example = (repo / "deploy" / "systemd" / "controller.env.example").read_text()
    settings = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )

    assert settings["LLMPING_LISTEN"].startswith("0.0.0.0:")
    assert settings["LLMPING_TOKEN"]
