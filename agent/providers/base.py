"""The provider adapter interface: building requests for one API and reading its responses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from google.protobuf.json_format import MessageToDict

from llmping import __version__
from llmping.agent.sse import SseEvent
from llmping.agent.stream import ResponseAccumulator
from llmping.errors import PlanError
from llmping.v1 import llmping_pb2 as pb

USER_AGENT = f"llmping/{__version__}"


@dataclass(frozen=True)
class HttpRequest:
    """Everything needed to send one request: URL, headers and JSON body."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]


class ProviderAdapter(ABC):
    """One API family: request building plus stream and body interpretation.

    Subclasses fill in the URL, the authentication headers, the JSON body and the
    interpretation of events and bodies. This class merges the plan's extra headers
    and extra body fields on top, so a plan can override anything an adapter sets.
    """

    # Suggested base URL, shown in error hints only: no request goes anywhere by
    # default, the plan must name the endpoint.
    example_base_url = "https://api.example.com/v1"

    def __init__(self, provider: pb.Provider) -> None:
        self.provider = provider
        self.base_url = provider.base_url.rstrip("/")
        self._check_base_url()

    def build_request(self, request: pb.RequestSpec, api_key: str | None) -> HttpRequest:
        """Build the URL, headers and body of one request."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if request.stream else "application/json",
            "User-Agent": USER_AGENT,
        }
        headers.update(self.default_headers())
        if api_key:
            headers.update(self.auth_headers(api_key))
        headers.update(self.provider.headers)

        body = self.build_body(request)
        if self.provider.HasField("extra_body"):
            merge_into(body, struct_to_dict(self.provider.extra_body))
        return HttpRequest(url=self.build_url(), headers=headers, body=body)

    def default_headers(self) -> dict[str, str]:
        """Return headers this API expects besides authentication."""
        return {}

    @abstractmethod
    def build_url(self) -> str:
        """Return the full request URL."""

    @abstractmethod
    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Return the headers that carry the API key."""

    @abstractmethod
    def build_body(self, request: pb.RequestSpec) -> dict[str, Any]:
        """Return the JSON body for the request spec."""

    @abstractmethod
    def interpret_event(self, event: SseEvent, now_ns: int, acc: ResponseAccumulator) -> None:
        """Apply one SSE event that arrived at now_ns to the accumulator.

        Raises ClassifiedError(malformed_response) for an event that cannot be read.
        """

    def interpret_payloads(
        self, payloads: list[bytes], now_ns: int, acc: ResponseAccumulator
    ) -> None:
        """Apply plain events, given as their raw data values, that arrived at now_ns.

        SseParser.feed_parts() returns these for "message" events of one data line.
        Stops at the first event that sets acc.error. This version decodes each value
        and calls interpret_event(); an adapter may read the bytes directly if the
        result is the same. No adapter reads an event's id, so the events passed on
        here carry none.
        """
        for payload in payloads:
            self.interpret_event(SseEvent(data=payload.decode("utf-8", "replace")), now_ns, acc)
            if acc.error is not None:
                return

    @abstractmethod
    def interpret_body(self, obj: Any, now_ns: int, acc: ResponseAccumulator) -> None:
        """Apply a complete non-streaming JSON body that arrived at now_ns."""

    def _check_base_url(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme in ("http", "https") and parts.netloc:
            return
        raise PlanError(
            f"providers[{self.provider.name}].base_url",
            f"expected an http:// or https:// URL, got {self.provider.base_url!r}",
            f"set base_url to the API endpoint, for example {self.example_base_url}",
        )


def struct_to_dict(struct: Any) -> dict[str, Any]:
    """Convert a google.protobuf.Struct to plain JSON values.

    Struct stores every number as a double, so 50 comes back as 50.0; whole numbers are
    turned back into ints because some providers reject 50.0 for integer fields.
    """
    converted = _whole_floats_to_int(MessageToDict(struct))
    return converted if isinstance(converted, dict) else {}


def _whole_floats_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_to_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_to_int(item) for item in value]
    return value


def merge_into(target: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge extra into target; nested objects merge key by key, anything else replaces."""
    for key, value in extra.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merge_into(current, value)
        else:
            target[key] = value


def messages_to_json(request: pb.RequestSpec) -> list[dict[str, str]]:
    """Return the request's chat messages as JSON objects."""
    return [{"role": message.role, "content": message.content} for message in request.messages]


# Token counts are int32 fields in the record.
MAX_COUNT = 2**31 - 1


def int_field(value: Any) -> int | None:
    """Return value when it is a count (an int from 0 to MAX_COUNT, not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None


def text_field(container: Any, key: str) -> str:
    """Return container[key] when it is a string, else "" (for null, missing or other types)."""
    if not isinstance(container, dict):
        return ""
    value = container.get(key)
    return value if isinstance(value, str) else ""
