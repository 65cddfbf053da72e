"""Azure OpenAI chat completions on a deployment.

URL: {resource endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V.
Azure returns 404 "Resource not found" when api-version is missing, so it is always
sent. The key goes in the api-key header; Authorization: Bearer is for Entra ID tokens,
which a plan can still send through provider.headers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from llmping.agent.providers.openai import OpenAIAdapter
from llmping.errors import PlanError
from llmping.v1 import llmping_pb2 as pb

# The newest generally available data-plane version when this adapter was written.
DEFAULT_API_VERSION = "2024-10-21"


class AzureAdapter(OpenAIAdapter):
    """Azure OpenAI, addressed by resource endpoint and deployment name."""

    kind = "azure"
    example_base_url = "https://RESOURCE.openai.azure.com"
    # Older api-versions know only max_tokens.
    max_tokens_field = "max_tokens"

    def __init__(self, provider: pb.Provider) -> None:
        super().__init__(provider)
        if not (provider.deployment or provider.model):
            raise PlanError(
                f"providers[{provider.name}].deployment",
                "an Azure OpenAI provider needs a deployment name",
                "set deployment (or model, used as the deployment when deployment is empty)",
            )

    def build_url(self) -> str:
        deployment = self.provider.deployment or self.provider.model
        query = urlencode({"api-version": self.provider.api_version or DEFAULT_API_VERSION})
        path = f"/openai/deployments/{quote(deployment, safe='')}/chat/completions"
        return f"{self.base_url}{path}?{query}"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"api-key": api_key}

    def build_body(self, request: pb.RequestSpec) -> dict[str, Any]:
        body = super().build_body(request)
        # The deployment in the URL chooses the model.
        body.pop("model", None)
        return body
