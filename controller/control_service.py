"""ControlService: what the CLI calls to submit, watch, cancel, list and report runs."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import NoReturn

import grpc

from llmping.errors import InputError, LlmpingError, StoreError
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

from .aggregate import build_report
from .auth import require_token
from .registry import AgentRegistry, AgentSession
from .run_state import TERMINAL_RUN_STATES
from .runs import RunManager, RunNotFoundError
from .store import open_reader

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5


def status_for(exc: LlmpingError) -> grpc.StatusCode:
    """Map an llmping error to the gRPC status code returned to the client."""
    if isinstance(exc, RunNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def compute_report(db_path: Path, run: pb.RunInfo, plan: pb.Plan) -> pb.Report:
    """Build a report on a fresh read-only connection; blocking, so run it in a thread."""
    conn = open_reader(db_path)
    try:
        return build_report(conn, run, plan)
    except sqlite3.Error as exc:
        raise StoreError(
            f"reading records of run {run.run_id} from {db_path} failed: {exc}"
        ) from exc
    finally:
        conn.close()


class ControlService(pb_grpc.ControlServiceServicer):
    """Serves the CLI.

    When ``token`` is set and ``require_token`` is True (the default), every call must
    carry it as agents do, because a submitted run makes the agents spend their API
    keys.
    """

    def __init__(
        self,
        runs: RunManager,
        registry: AgentRegistry,
        db_path: Path,
        token: str = "",
        require_token: bool = True,
    ) -> None:
        self._runs = runs
        self._registry = registry
        self._db_path = db_path
        self._token = token if require_token else ""

    async def _abort(self, context: grpc.aio.ServicerContext, exc: LlmpingError) -> NoReturn:
        code = status_for(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("control call failed: %s", exc)
        await context.abort(code, str(exc))
        raise AssertionError("grpc context.abort returned instead of raising")

    async def SubmitRun(
        self, request: pb.SubmitRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunInfo:
        await require_token(context, self._token, "the CLI")
        try:
            return await self._runs.submit(request.plan)
        except (InputError, StoreError) as exc:
            await self._abort(context, exc)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Stream RunProgress about twice a second until the run has ended."""
        await require_token(context, self._token, "the CLI")
        while True:
            try:
                progress = await self._runs.progress(request.run_id)
            except LlmpingError as exc:
                await self._abort(context, exc)
            await context.write(progress)
            if progress.run.state in TERMINAL_RUN_STATES:
                return
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunInfo:
        await require_token(context, self._token, "the CLI")
        try:
            return await self._runs.cancel(request.run_id, request.reason)
        except LlmpingError as exc:
            await self._abort(context, exc)

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        await require_token(context, self._token, "the CLI")
        assignments = self._runs.open_assignments_by_agent()
        return pb.ListAgentsResponse(
            agents=[
                agent_info(s, assignments.get(s.agent_id, [])) for s in self._registry.sessions()
            ]
        )

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        await require_token(context, self._token, "the CLI")
        try:
            return pb.ListRunsResponse(runs=await self._runs.list_runs(request.limit))
        except LlmpingError as exc:
            await self._abort(context, exc)

    async def GetReport(
        self, request: pb.GetReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.Report:
        await require_token(context, self._token, "the CLI")
        try:
            run = await self._runs.run_info(request.run_id)
            plan = await self._runs.stored_plan(request.run_id)
            return await asyncio.to_thread(compute_report, self._db_path, run, plan)
        except LlmpingError as exc:
            await self._abort(context, exc)


def agent_info(session: AgentSession, assignment_ids: list[str]) -> pb.AgentInfo:
    info = pb.AgentInfo(
        agent_id=session.agent_id,
        labels=session.labels,
        version=session.version,
        hostname=session.hostname,
        peer=session.peer,
        connected_unix_ns=session.connected_unix_ns,
        last_heartbeat_unix_ns=session.last_heartbeat_unix_ns,
        clock_offset_ns=session.clock_offset_ns,
        assignment_ids=assignment_ids,
    )
    info.load.CopyFrom(session.load)
    return info
