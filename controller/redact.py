"""Remove secrets from a plan before it is stored.

Plans name the environment variable that contains an API key (api_key_env), never the
key itself, but users can still put credentials in provider headers or in a proxy URL.
The stored copy replaces those values, also where they appear in source_yaml; the copy
sent to agents is untouched. Text shaped like an API key or a bearer token, such as a
key pasted into a YAML comment, is replaced in source_yaml and in header values too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from llmping.v1 import llmping_pb2 as pb

REDACTED = "<redacted>"
# A header whose lowercased name contains one of these words is treated as a secret.
SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "password", "signature")
# Common API key shapes: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-),
# Groq (gsk_), xAI (xai-), Google (AIza) and Hugging Face (hf_), then bearer tokens. The
# prefixes are case-sensitive, so variable names such as HF_API_TOKEN never match. A
# match needs 20 characters after the prefix with a digit among them, so that names such
# as "xai-grok-production-relay" stay readable.
_KEY_SHAPE = re.compile(
    r"(?<![A-Za-z0-9_-])(?:sk-|gsk_|xai-|AIza|hf_)(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}"
)
_BEARER_TOKEN = re.compile(r"\b([Bb]earer\s+)(?=[A-Za-z0-9._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{20,}")


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_HEADER_WORDS)


def redact_url(url: str) -> str:
    """Replace the password of ``scheme://user:password@host`` with REDACTED."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:{REDACTED}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_key_shapes(text: str) -> str:
    """Replace every substring shaped like an API key or bearer token with REDACTED."""
    text = _KEY_SHAPE.sub(REDACTED, text)
    return _BEARER_TOKEN.sub(lambda match: match.group(1) + REDACTED, text)


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_plan(plan: pb.Plan) -> pb.Plan:
    """Return a copy of the plan that is safe to store."""
    safe = pb.Plan()
    safe.CopyFrom(plan)
    secrets: set[str] = set()
    for provider in safe.providers:
        for name in list(provider.headers):
            if is_secret_header(name):
                secrets.add(provider.headers[name])
                provider.headers[name] = REDACTED
            else:
                provider.headers[name] = redact_key_shapes(provider.headers[name])
        for url in (provider.proxy_url, provider.base_url):
            password = _url_password(url)
            if password:
                secrets.add(password)
        provider.proxy_url = redact_url(provider.proxy_url) if provider.proxy_url else ""
        provider.base_url = redact_url(provider.base_url) if provider.base_url else ""
    # Values shorter than 4 characters stay in the YAML text, because replacing them
    # would also change unrelated text.
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        safe.source_yaml = safe.source_yaml.replace(secret, REDACTED)
    safe.source_yaml = redact_key_shapes(safe.source_yaml)
    return safe
