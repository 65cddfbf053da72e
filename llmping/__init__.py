"""llmping: measure the latency and concurrency of LLM APIs from several networks at once.

The package is split by role: ``llmping.agent`` sends requests, ``llmping.controller``
owns runs and stores records, ``llmping.cli`` is the command line, ``llmping.simulator``
is a local OpenAI-compatible provider, and ``llmping.v1`` is the generated gRPC contract.
"""

__version__ = "0.1.0"
