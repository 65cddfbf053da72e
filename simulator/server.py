"""The simulator's aiohttp server: every provider under its own path prefix.

Routes, for each provider NAME (base URL ``http://HOST:PORT/NAME/v1``):

- ``POST /NAME/v1/chat/completions``: OpenAI chat completions, streaming or not.
- ``POST /NAME/v1/messages``: Anthropic Messages, streaming or not.
- ``GET /NAME/v1/models``: the provider's models as an OpenAI model list.
- ``POST /NAME/openai/deployments/DEPLOYMENT/chat/completions?api-version=V``: the
  Azure OpenAI URL shape, where the deployment name is the model.
- ``GET /``: the providers and their base URLs, for people poking at the server.

A request goes through these checks, in this order, before any text is generated:
API key (401), JSON body (400), model offered (404, code model_not_found), rate limit
(429 with Retry-After), then the profile's injected error rate.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from llmping.simulator import anthropic_wire, openai_wire
from llmping.simulator.chat_request import (
    ChatRequest,
    RequestRejected,
    parse_anthropic_messages,
    parse_openai_chat,
    read_json_object,
)
from llmping.simulator.error_responses import Dialect, error_response, injected_error
from llmping.simulator.profile_yaml import validate_profiles
from llmping.simulator.profiles import ProviderProfile, default_profiles
from llmping.simulator.provider_state import ProviderState, ProviderStats
from llmping.simulator.response_plan import ResponsePlan, plan_response
from llmping.simulator.sse import ClientGone, sleep_until_ns

log = logging.getLogger(__name__)

BodyParser = Callable[[dict[str, object]], ChatRequest]


class SimulatorApp:
    """Request handlers bound to the providers' runtime state."""

    def __init__(self, profiles: Sequence[ProviderProfile]) -> None:
        self.states = {profile.name: ProviderState(profile) for profile in profiles}

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_post("/{provider}/v1/chat/completions", self.openai_chat)
        app.router.add_post("/{provider}/v1/messages", self.anthropic_messages)
        app.router.add_get("/{provider}/v1/models", self.models)
        app.router.add_post(
            "/{provider}/openai/deployments/{deployment}/chat/completions", self.azure_chat
        )
        return app

    async def index(self, request: web.Request) -> web.Response:
        root = f"{request.scheme}://{request.host}"
        providers = [
            {"name": name, "base_url": f"{root}/{name}/v1", "models": list(state.profile.models)}
            for name, state in self.states.items()
        ]
        return web.json_response({"providers": providers})

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "openai", parse_openai_chat, model_override=None)

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "anthropic", parse_anthropic_messages, model_override=None)

    async def azure_chat(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("api-version"):
            message = "missing api-version query parameter; add one such as ?api-version=2024-10-21"
            return error_response("openai", 400, message, "invalid_request")
        deployment = request.match_info["deployment"]
        return await self._chat(request, "openai", parse_openai_chat, model_override=deployment)

    async def models(self, request: web.Request) -> web.Response:
        headers = _base_headers()
        try:
            state = self._provider(request)
            _check_api_key(state.profile, request)
        except RequestRejected as exc:
            return error_response("openai", exc.status, exc.message, exc.code, headers)
        data = [
            {
                "id": model,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": state.profile.name,
            }
            for model in state.profile.models
        ]
        return web.json_response({"object": "list", "data": data}, headers=headers)

    async def _chat(
        self,
        request: web.Request,
        dialect: Dialect,
        parse: BodyParser,
        model_override: str | None,
    ) -> web.StreamResponse:
        # Every timed step of the response counts from this instant.
        arrival_ns = time.perf_counter_ns()
        headers = _base_headers()
        try:
            state = self._provider(request)
        except RequestRejected as exc:
            return error_response(dialect, exc.status, exc.message, exc.code, headers)

        state.stats.requests += 1
        try:
            chat = await self._admit(state, request, parse, model_override, arrival_ns, headers)
        except RequestRejected as exc:
            # Rejections are routine under load, so they are counted and logged at DEBUG.
            state.stats.statuses[exc.status] += 1
            log.debug(
                "provider %s rejected request %s: %d %s",
                state.profile.name,
                headers["x-request-id"],
                exc.status,
                exc.message,
            )
            return error_response(dialect, exc.status, exc.message, exc.code, headers)

        profile = state.profile
        if profile.error_rate and state.rng.random() < profile.error_rate:
            state.stats.statuses[profile.error_status] += 1
            await sleep_until_ns(arrival_ns + round(profile.error_delay_ms * 1_000_000))
            return injected_error(dialect, profile.error_status, profile.error_body, headers)

        plan = plan_response(
            profile, state.rng, arrival_ns, chat.model, chat.messages, chat.max_tokens
        )
        state.stats.statuses[200] += 1
        if plan.fault != "none":
            state.stats.stream_faults += 1
        return await _respond(request, dialect, chat, plan, profile, headers)

    async def _admit(
        self,
        state: ProviderState,
        request: web.Request,
        parse: BodyParser,
        model_override: str | None,
        arrival_ns: int,
        headers: dict[str, str],
    ) -> ChatRequest:
        """Run the checks before generation; raise RequestRejected on the first failure."""
        _check_api_key(state.profile, request)
        chat = parse(await read_json_object(request))
        model = model_override or chat.model
        if model not in state.profile.models:
            offered = ", ".join(state.profile.models)
            raise RequestRejected(
                404,
                f"The model '{model}' does not exist on provider '{state.profile.name}'"
                f" (offered: {offered})",
                "model_not_found",
            )

        if state.limiter is not None:
            decision = state.limiter.try_admit(arrival_ns)
            headers.update(decision.headers())
            if not decision.admitted:
                raise RequestRejected(
                    429,
                    f"Rate limit reached for provider '{state.profile.name}':"
                    f" {decision.limit} requests per second; retry later",
                    "rate_limit_exceeded",
                )
        return dataclasses.replace(chat, model=model)

    def _provider(self, request: web.Request) -> ProviderState:
        name = request.match_info["provider"]
        state = self.states.get(name)
        if state is None:
            known = ", ".join(self.states)
            raise RequestRejected(
                404, f"no simulated provider named '{name}' (known: {known})", "provider_not_found"
            )
        return state


async def _respond(
    request: web.Request,
    dialect: Dialect,
    chat: ChatRequest,
    plan: ResponsePlan,
    profile: ProviderProfile,
    headers: dict[str, str],
) -> web.StreamResponse:
    try:
        if dialect == "anthropic" and chat.stream:
            return await anthropic_wire.stream_messages(request, plan, profile.quirks, headers)
        if dialect == "anthropic":
            return await anthropic_wire.complete_messages(request, plan, headers)
        if chat.stream:
            return await openai_wire.stream_chat(
                request, plan, profile.quirks, chat.include_usage, headers
            )
        return await openai_wire.complete_chat(request, plan, headers)
    except ClientGone as exc:
        # Load tests close connections mid-stream when they cancel requests.
        log.debug("client closed the connection during a response of provider %s", profile.name)
        return exc.response


def _check_api_key(profile: ProviderProfile, request: web.Request) -> None:
    """Raise RequestRejected(401) unless the request carries the profile's key.

    Accepted headers: ``Authorization: Bearer KEY`` (OpenAI), ``x-api-key`` (Anthropic)
    and ``api-key`` (Azure). The key is compared in constant time and never echoed.
    """
    if profile.api_key is None:
        return
    presented = _presented_key(request)
    if presented is None:
        raise RequestRejected(
            401,
            "missing API key; send it as 'Authorization: Bearer KEY' (or x-api-key / api-key)",
            "invalid_api_key",
        )
    if not hmac.compare_digest(presented.encode(), profile.api_key.encode()):
        raise RequestRejected(401, "incorrect API key provided", "invalid_api_key")


def _presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key")


def _base_headers() -> dict[str, str]:
    return {"x-request-id": "req_" + secrets.token_hex(8)}


@dataclass
class SimulatorHandle:
    """A running simulator; stop it with ``await handle.stop()``."""

    host: str
    port: int
    _runner: web.AppRunner
    _app: SimulatorApp

    @property
    def url(self) -> str:
        """Root URL of the server, with a wildcard listen address replaced by loopback."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def profiles(self) -> list[ProviderProfile]:
        return [state.profile for state in self._app.states.values()]

    def base_url(self, provider_name: str) -> str:
        """Return the OpenAI-style base URL of a provider (``.../NAME/v1``).

        Raises KeyError for a provider the simulator does not serve.
        """
        if provider_name not in self._app.states:
            raise KeyError(f"no simulated provider named {provider_name!r}")
        return f"{self.url}/{provider_name}/v1"

    def stats(self, provider_name: str) -> ProviderStats:
        """Return the live counters of one provider."""
        return self._app.states[provider_name].stats

    async def stop(self) -> None:
        await self._runner.cleanup()
        log.info("simulator on %s stopped", self.url)


async def start_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    profiles: Sequence[ProviderProfile] | None = None,
) -> SimulatorHandle:
    """Start the simulator on host:port (port 0 picks a free port) and return its handle.

    profiles defaults to the built-in set. Raises ProfileError for an invalid profile
    and OSError when the address cannot be bound.
    """
    chosen = list(profiles) if profiles is not None else default_profiles()
    validate_profiles(chosen)
    simulator_app = SimulatorApp(chosen)

    # Access logging is off: at hundreds of requests per second it would drown the log.
    runner = web.AppRunner(simulator_app.build(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])

    handle = SimulatorHandle(host=host, port=bound_port, _runner=runner, _app=simulator_app)
    log.info(
        "simulator listening on %s with providers %s", handle.url, ", ".join(simulator_app.states)
    )
    return handle


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
