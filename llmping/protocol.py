"""Settings of the agent-controller protocol that both sides must agree on.

The proto file defines the messages; these are the limits and conventions around them
that it cannot express.
"""

from __future__ import annotations

# Largest gRPC message either side sends or accepts, on the controller's server and the
# agent's channel alike. gRPC's own default is 4 MiB for receiving, which a result batch
# with long error details or an assignment with a long prompt can pass.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Largest Assignment the controller sends (the serialized plan plus the assignment's own
# fields). The plan carries the prompt twice, in request.messages and in source_yaml,
# and goes to every agent and into the database, so this cap keeps a run's fan-out
# bounded while still allowing prompts of a few MiB.
MAX_ASSIGNMENT_BYTES = 8 * 1024 * 1024

# Start of the details of the UNAUTHENTICATED status that the controller returns for a
# missing or wrong bearer token. The CLI recognises it and states the fix only once.
TOKEN_REJECTED_PREFIX = "missing or invalid token"

# Start of the Goodbye reason a controller sends to a stream it replaced because a newer
# stream registered the same agent id. An agent that reads it stops instead of
# reconnecting, so that two agents with one id do not replace each other forever.
REPLACED_GOODBYE_PREFIX = "replaced by a newer connection"


def replaced_goodbye_reason(agent_id: str, peer: str) -> str:
    """Return the Goodbye reason for a stream replaced by one from ``peer``."""
    return f"{REPLACED_GOODBYE_PREFIX} with agent id {agent_id} from {peer}"
