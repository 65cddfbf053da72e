"""Profile loading from YAML, validation messages, and the built-in set."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from llmping.errors import InputError
from llmping.simulator import (
    DEMO_MODEL,
    ProfileError,
    default_profiles,
    load_profiles_file,
    parse_profiles,
    start_simulator,
)

VALID = """
providers:
  - name: relay-a
    models: [gpt-4o, gpt-4o-mini]
    ttft_ms: 120
    ttft_jitter_ms: 10
    ttft_distribution: normal
    tokens_per_s: 75.5
    output_tokens: 30
    error_rate: 0.1
    error_status: 503
    error_body: html
    rate_limit_per_s: 20
    api_key: sk-local
    seed: 7
    quirks:
      keepalive_interval_ms: 50
      azure_empty_first_chunk: true
      reasoning_tokens: 4
      stream_error_rate: 0.2
      truncate_rate: 0.1
      fault_after_tokens: 3
  - name: plain
    models: m
    ttft_ms: 0
    tokens_per_s: 10
"""


def test_valid_file_loads_every_field(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(VALID, encoding="utf-8")
    relay, plain = load_profiles_file(path)

    assert relay.models == ("gpt-4o", "gpt-4o-mini")
    assert relay.ttft_distribution == "normal"
    assert relay.tokens_per_s == 75.5
    assert relay.error_body == "html"
    assert relay.rate_limit_per_s == 20
    assert relay.api_key == "sk-local"
    assert relay.quirks.reasoning_tokens == 4
    assert relay.quirks.fault_after_tokens == 3
    assert plain.models == ("m",)
    assert plain.output_tokens == 48
    assert plain.rate_limit_per_s is None


def test_api_key_hidden_from_repr():
    (profile,) = parse_profiles(
        {
            "providers": [
                {
                    "name": "a",
                    "models": ["m"],
                    "ttft_ms": 1,
                    "tokens_per_s": 1,
                    "api_key": "sk-secret",
                }
            ]
        }
    )
    assert "sk-secret" not in repr(profile)


@pytest.mark.parametrize(
    ("provider_changes", "field_path"),
    [
        ({"ttft_ms": "fast"}, "providers[0].ttft_ms"),
        ({"ttft_ms": -5}, "providers[0].ttft_ms"),
        ({"tokens_per_s": 0}, "providers[0].tokens_per_s"),
        ({"output_tokens": 2.5}, "providers[0].output_tokens"),
        ({"error_rate": 1.5}, "providers[0].error_rate"),
        ({"error_status": 200}, "providers[0].error_status"),
        ({"error_body": "xml"}, "providers[0].error_body"),
        ({"ttft_distribution": "pareto"}, "providers[0].ttft_distribution"),
        ({"rate_limit_per_s": 0}, "providers[0].rate_limit_per_s"),
        ({"name": "has space"}, "providers[0].name"),
        ({"models": []}, "providers[0].models"),
        ({"tftt_ms": 5}, "providers[0].tftt_ms"),
        ({"quirks": {"keepalive_ms": 5}}, "providers[0].quirks.keepalive_ms"),
        (
            {"quirks": {"truncate_rate": 0.8, "stream_error_rate": 0.5}},
            "providers[0].quirks.truncate_rate",
        ),
        (
            {"quirks": {"azure_empty_first_chunk": "yes"}},
            "providers[0].quirks.azure_empty_first_chunk",
        ),
    ],
)
def test_invalid_field_named(provider_changes, field_path):
    provider = {"name": "a", "models": ["m"], "ttft_ms": 1, "tokens_per_s": 1}
    provider.update(provider_changes)
    with pytest.raises(ProfileError) as caught:
        parse_profiles({"providers": [provider]})
    assert caught.value.path == field_path
    assert field_path in str(caught.value)


def test_missing_field_named():
    with pytest.raises(ProfileError, match=r"providers\[0\]\.tokens_per_s"):
        parse_profiles({"providers": [{"name": "a", "models": ["m"], "ttft_ms": 1}]})


def test_duplicate_name_rejected():
    provider = {"name": "a", "models": ["m"], "ttft_ms": 1, "tokens_per_s": 1}
    with pytest.raises(ProfileError, match=r"providers\[1\]\.name"):
        parse_profiles({"providers": [provider, dict(provider)]})


def test_wrong_api_key_type_not_echoed():
    provider = {"name": "a", "models": ["m"], "ttft_ms": 1, "tokens_per_s": 1, "api_key": 123456789}
    with pytest.raises(ProfileError) as caught:
        parse_profiles({"providers": [provider]})
    assert "123456789" not in str(caught.value)


@pytest.mark.parametrize("document", ["- just a list", "providers: []", "other: 1"])
def test_bad_top_level_rejected(document):
    with pytest.raises(ProfileError):
        parse_profiles(yaml.safe_load(document))


def test_yaml_syntax_error_is_input_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("providers: [\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid YAML"):
        load_profiles_file(path)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_profiles_file(tmp_path / "absent.yaml")


async def test_start_simulator_validates_profiles():
    from llmping.simulator import ProviderProfile

    bad = ProviderProfile(name="a", models=("m",), ttft_ms=1.0, tokens_per_s=-1.0)
    with pytest.raises(ProfileError, match="tokens_per_s"):
        await start_simulator("127.0.0.1", 0, [bad])


def test_default_set_differs_and_shows_na():
    profiles = {profile.name: profile for profile in default_profiles()}
    assert {"fast-relay", "official", "budget-relay", "limited"} <= set(profiles)
    assert profiles["fast-relay"].ttft_ms < profiles["official"].ttft_ms
    assert profiles["budget-relay"].error_rate > 0
    assert profiles["limited"].rate_limit_per_s is not None
    assert any(DEMO_MODEL not in profile.models for profile in profiles.values())
    assert all(40 <= profile.output_tokens <= 60 for profile in profiles.values())


async def test_default_set_serves_demo_model(session, body):
    handle = await start_simulator("127.0.0.1", 0)

    async def status_of(name: str) -> int:
        url = handle.base_url(name) + "/chat/completions"
        request = body(model=DEMO_MODEL, stream=False, max_tokens=1)
        async with session.post(url, json=request) as response:
            return response.status

    try:
        statuses = await asyncio.gather(*(status_of(p.name) for p in handle.profiles))
    finally:
        await handle.stop()

    for profile, status in zip(handle.profiles, statuses, strict=True):
        if DEMO_MODEL not in profile.models:
            assert status == 404
        elif profile.error_rate:
            assert status in (200, profile.error_status)
        else:
            assert status == 200
