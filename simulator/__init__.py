"""Simulated LLM providers and a delay-adding proxy, for tests and ``llmping demo``.

``start_simulator`` serves several providers with known, injected behaviour (TTFT, token
rate, errors, rate limits, stream quirks) from one aiohttp server. ``start_delay_proxy``
starts an HTTP forward proxy to loopback targets that adds a fixed one-way delay in each
direction, so simulated regions can reach the providers over paths of known latency.
"""

from llmping.simulator.profile_yaml import ProfileError, load_profiles_file, parse_profiles
from llmping.simulator.profiles import (
    DEMO_MODEL,
    ProviderProfile,
    QuirkProfile,
    default_profiles,
)
from llmping.simulator.provider_state import ProviderStats
from llmping.simulator.proxy import ProxyHandle, start_delay_proxy
from llmping.simulator.server import SimulatorHandle, start_simulator

__all__ = [
    "DEMO_MODEL",
    "ProfileError",
    "ProviderProfile",
    "ProviderStats",
    "ProxyHandle",
    "QuirkProfile",
    "SimulatorHandle",
    "default_profiles",
    "load_profiles_file",
    "parse_profiles",
    "start_delay_proxy",
    "start_simulator",
]
