"""Which hosts an agent sends its API keys to: --key-host rules and their defaults."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from click.testing import CliRunner

from llmping.agent.keys import (
    KEY_HOSTS_ENV,
    KeyHostError,
    KeyHostRules,
    MissingApiKeyError,
    parse_key_hosts_env,
    resolve_api_keys,
)
from llmping.cli.agent_cmd import publish_key_hosts
from llmping.cli.main import cli
from llmping.errors import InputError
from llmping.v1 import llmping_pb2 as pb

SECRET = "sk-test-0123456789abcdef"


def assignment_for(*providers: pb.Provider, **secrets: str) -> pb.Assignment:
    plan = pb.Plan(name="keys", providers=list(providers))
    return pb.Assignment(assignment_id="a-1", plan=plan, provider_secrets=secrets)


def provider(base_url: str, api_key_env: str = "OPENAI_API_KEY", name: str = "p") -> pb.Provider:
    return pb.Provider(name=name, kind="openai", base_url=base_url, api_key_env=api_key_env)


def test_key_not_sent_to_plan_host() -> None:
    assignment = assignment_for(provider("http://evil.example/v1", name="stolen"))

    with pytest.raises(KeyHostError) as caught:
        resolve_api_keys(assignment, "agent-7", {"OPENAI_API_KEY": SECRET})

    message = str(caught.value)
    assert "provider 'stolen'" in message
    assert "OPENAI_API_KEY" in message
    assert "host evil.example" in message
    assert "agent agent-7" in message
    assert "--key-host OPENAI_API_KEY=api.openai.com,evil.example" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("variable", "base_url"),
    [
        ("OPENAI_API_KEY", "https://api.openai.com/v1"),
        ("ANTHROPIC_API_KEY", "https://api.anthropic.com"),
        ("OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
        ("SILICONFLOW_API_KEY", "https://api.siliconflow.cn/v1"),
        ("DEEPSEEK_API_KEY", "https://API.DeepSeek.com./v1"),
    ],
)
def test_official_host_allowed_by_default(variable: str, base_url: str) -> None:
    assignment = assignment_for(provider(base_url, variable))

    keys = resolve_api_keys(assignment, "agent-1", {variable: SECRET})

    assert keys == {"p": SECRET}


def test_official_host_only_for_its_variable() -> None:
    assignment = assignment_for(provider("https://api.openai.com/v1", "DEEPSEEK_API_KEY"))

    with pytest.raises(KeyHostError):
        resolve_api_keys(assignment, "agent-1", {"DEEPSEEK_API_KEY": SECRET})


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8000/v1", "http://127.3.4.5/v1", "http://[::1]:9/v1", "http://localhost/v1"],
)
def test_loopback_allowed_for_any_variable(base_url: str) -> None:
    assignment = assignment_for(provider(base_url, "RELAY_KEY"))

    assert resolve_api_keys(assignment, "agent-1", {"RELAY_KEY": SECRET}) == {"p": SECRET}


@pytest.mark.parametrize(
    "base_url",
    [
        "http://relay.example.com/v1",
        "http://10.0.0.8/v1",
        # The host is evil.example; 127.0.0.1:80 is the user and password.
        "http://127.0.0.1:80@evil.example/v1",
        # URL parsers disagree on the host of this one, so the key goes nowhere.
        "http://127.0.0.1\\@evil.example/v1",
        "not a url",
    ],
)
def test_other_hosts_rejected_by_default(base_url: str) -> None:
    assignment = assignment_for(provider(base_url, "RELAY_KEY"))

    with pytest.raises(KeyHostError) as caught:
        resolve_api_keys(assignment, "agent-1", {"RELAY_KEY": SECRET})

    assert SECRET not in str(caught.value)


def test_configured_hosts_replace_defaults() -> None:
    rules = KeyHostRules(parse_key_hosts_env("RELAY_KEY=relay.example.com,*.corp.example"))
    env = {"RELAY_KEY": SECRET}

    for base_url in ("https://relay.example.com/v1", "https://eu.gw.corp.example/v1"):
        keys = resolve_api_keys(assignment_for(provider(base_url, "RELAY_KEY")), "a", env, rules)
        assert keys == {"p": SECRET}
    for base_url in ("http://127.0.0.1:8000/v1", "https://corp.example/v1"):
        with pytest.raises(KeyHostError) as caught:
            resolve_api_keys(assignment_for(provider(base_url, "RELAY_KEY")), "a", env, rules)
        assert "(allowed: relay.example.com, *.corp.example)" in str(caught.value)


def test_rules_read_from_agent_environment() -> None:
    env = {"OPENAI_API_KEY": SECRET, KEY_HOSTS_ENV: "OPENAI_API_KEY=gw.example.com; X=y.example"}

    keys = resolve_api_keys(assignment_for(provider("https://gw.example.com/v1")), "a", env)

    assert keys == {"p": SECRET}
    with pytest.raises(KeyHostError):
        resolve_api_keys(assignment_for(provider("https://api.openai.com/v1")), "a", env)


def test_host_checked_before_missing_key() -> None:
    assignment = assignment_for(provider("http://evil.example/v1"))

    with pytest.raises(KeyHostError):
        resolve_api_keys(assignment, "agent-1", {})
    with pytest.raises(MissingApiKeyError):
        resolve_api_keys(assignment_for(provider("http://127.0.0.1/v1")), "agent-1", {})


def test_controller_secrets_exempt() -> None:
    assignment = assignment_for(provider("https://relay.example.com/v1"), p="controller-held")

    assert resolve_api_keys(assignment, "agent-1", {}) == {"p": "controller-held"}


@pytest.mark.parametrize(
    "text",
    ["OPENAI_API_KEY", "1KEY=host.example", "KEY=", "KEY=https://host.example", "KEY=a b"],
)
def test_invalid_rules_rejected(text: str) -> None:
    with pytest.raises(InputError):
        parse_key_hosts_env(text)


@pytest.mark.parametrize(
    ("args", "env_value"),
    [
        (["--key-host", "OPENAI_API_KEY=https://x.example"], None),
        ([], "RELAY_KEY=relay.example;;OPENAI_API_KEY=https://x.example"),
    ],
    ids=["flag", "environment"],
)
def test_invalid_key_host_exits_2(args: list[str], env_value: str | None) -> None:
    result = CliRunner().invoke(
        cli,
        ["agent", "--region", "tokyo", *args],
        env={"LLMPING_CONTROLLER": None, KEY_HOSTS_ENV: env_value},
    )

    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid host 'https://x.example' in --key-host")


def test_agent_help_explains_flags() -> None:
    result = CliRunner().invoke(cli, ["agent", "--help"], terminal_width=200)
    text = " ".join(result.output.split())

    assert "--key-host VAR=HOST[,HOST...]" in text
    assert "does not enforce it" in text
    assert "that set no proxy in the plan" in text
    assert "proxy_url" not in text


def test_publish_key_hosts_sets_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(KEY_HOSTS_ENV, raising=False)
    caplog.set_level(logging.INFO)

    publish_key_hosts({"RELAY_KEY": ("relay.example.com", "*.corp.example")})

    assert os.environ[KEY_HOSTS_ENV] == "RELAY_KEY=relay.example.com,*.corp.example"
    assert "RELAY_KEY are sent only to hosts relay.example.com, *.corp.example" in caplog.text
    assert "OPENAI_API_KEY also to api.openai.com" in caplog.text


async def test_disallowed_host_fails_assignment(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    env = {"LOCAL_KEY": SECRET, KEY_HOSTS_ENV: "LOCAL_KEY=api.example.com"}
    await make_agent(peer.address, env=env)
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")
    plan = plan_factory(
        [provider.provider(name="local", api_key_env="LOCAL_KEY")],
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=2),
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=2)))

    await waiter(lambda: peer.controller.final_update("a-1") is not None, what="a final update")

    final = peer.controller.final_update("a-1")
    assert peer.controller.states("a-1") == ["FAILED"]
    assert "provider 'local'" in final.message
    assert "LOCAL_KEY" in final.message
    assert "host 127.0.0.1" in final.message
    assert "--key-host LOCAL_KEY=api.example.com,127.0.0.1" in final.message
    assert SECRET not in final.message
    assert provider.behaviour.requests == 0
