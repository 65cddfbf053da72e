"""The llmping exception tree.

LlmpingError                   base of every error llmping raises on purpose
├── InputError                 a plan, flag or file is invalid (CLI exit status 2)
│   └── PlanError              a plan field is invalid; carries the field path
├── ControllerUnavailableError the controller cannot be reached (CLI exit status 3)
│   └── ControllerTlsError     the TLS handshake with the controller failed
├── RunError                   a run could not start or ended badly (CLI exit status 1)
└── StoreError                 the SQLite store failed

Per-request failures are never exceptions: they become records with an error class.
Errors from aiohttp, grpc and sqlite3 are translated into these at the module that
calls the library, chained with ``raise ... from``.
"""

from __future__ import annotations


class LlmpingError(Exception):
    """Base class for errors llmping raises on purpose."""

    exit_code = 1


class InputError(LlmpingError):
    """A plan, flag or file given by the user is invalid."""

    exit_code = 2


class PlanError(InputError):
    """A plan field is invalid.

    ``path`` is the dotted field path (``providers[1].base_url``) and ``hint`` tells how
    to fix it.
    """

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        self.path = path
        self.problem = problem
        self.hint = hint
        text = f"invalid plan field {path}: {problem}"
        if hint:
            text += f"; {hint}"
        super().__init__(text)


class ControllerUnavailableError(LlmpingError):
    """The controller did not respond at the given address."""

    exit_code = 3


class ControllerTlsError(ControllerUnavailableError):
    """The TLS handshake with the controller failed; the message names the likely cause."""


class RunError(LlmpingError):
    """A run could not be started, or ended failed or partial."""

    exit_code = 1


class StoreError(LlmpingError):
    """Reading or writing the record store failed."""

    exit_code = 1
