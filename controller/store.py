"""The SQLite record store: runs, assignments, result batches and records.

One writer connection, used only from one dedicated thread (``StoreWorker``), so writes
happen in the order they were submitted and the asyncio loop does not wait on SQLite.
Reports open their own read-only connections, which WAL mode lets run next to the
writer.

Exactly-once ingest rests on the ``batches`` table: its primary key is
(assignment_id, seq), and a batch's key and its records are written in one
transaction. A resent batch finds its key already present and stores nothing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from llmping.errors import StoreError
from llmping.v1 import llmping_pb2 as pb

SCHEMA_VERSION = 1

# One column per scalar field of pb.Record, in insert order. Written out rather than
# derived from the descriptor so that a new proto field cannot silently change the
# schema of an existing database: tests fail until a column and a migration exist.
RECORD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT"),
    ("assignment_id", "TEXT"),
    ("agent_id", "TEXT"),
    ("target", "TEXT"),
    ("provider", "TEXT"),
    ("model", "TEXT"),
    ("index", "INTEGER"),
    ("stage_index", "INTEGER"),
    ("warmup", "INTEGER"),
    ("scheduled_unix_ns", "INTEGER"),
    ("start_unix_ns", "INTEGER"),
    ("start_lag_ms", "REAL"),
    ("dns_ms", "REAL"),
    ("connect_ms", "REAL"),
    ("tls_ms", "REAL"),
    ("connection_reused", "INTEGER"),
    ("ttfb_ms", "REAL"),
    ("ttft_ms", "REAL"),
    ("ttft_content_ms", "REAL"),
    ("e2e_ms", "REAL"),
    ("itl_count", "INTEGER"),
    ("itl_mean_ms", "REAL"),
    ("itl_p50_ms", "REAL"),
    ("itl_p90_ms", "REAL"),
    ("itl_max_ms", "REAL"),
    ("tpot_ms", "REAL"),
    ("output_tokens", "INTEGER"),
    ("output_tokens_estimated", "INTEGER"),
    ("input_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("content_chunks", "INTEGER"),
    ("bytes_received", "INTEGER"),
    ("http_status", "INTEGER"),
    ("http_version", "TEXT"),
    ("remote_ip", "TEXT"),
    ("finish_reason", "TEXT"),
    ("response_model", "TEXT"),
    ("response_id", "TEXT"),
    ("error_class", "TEXT"),
    ("error_detail", "TEXT"),
    ("error_phase", "TEXT"),
    ("retry_after_s", "REAL"),
    ("attempt", "INTEGER"),
    ("trace_id", "TEXT"),
    ("span_id", "TEXT"),
    ("clock_offset_ns", "INTEGER"),
)
RECORD_FIELD_NAMES: tuple[str, ...] = tuple(name for name, _ in RECORD_COLUMNS)
# Proto3 `optional` fields: stored as NULL when the agent did not set them.
OPTIONAL_RECORD_FIELDS: frozenset[str] = frozenset(
    field.name for field in pb.Record.DESCRIPTOR.fields if field.has_presence
)
BOOL_RECORD_FIELDS = frozenset({"warmup", "connection_reused", "output_tokens_estimated"})
# The map field rate_limit_headers is stored as JSON text in this extra column.
HEADERS_COLUMN = "rate_limit_headers"


def quote_identifier(name: str) -> str:
    """Quote a column name; some Record fields (``index``) are SQL keywords."""
    return '"' + name.replace('"', '""') + '"'


_RECORD_COLUMN_LIST = ", ".join(quote_identifier(n) for n in (*RECORD_FIELD_NAMES, HEADERS_COLUMN))
_INSERT_RECORD_SQL = (
    f"INSERT INTO records ({_RECORD_COLUMN_LIST}) "
    f"VALUES ({', '.join('?' for _ in range(len(RECORD_COLUMNS) + 1))})"
)
_OPTIONAL_POSITIONS: tuple[tuple[int, str], ...] = tuple(
    (position, name)
    for position, name in enumerate(RECORD_FIELD_NAMES)
    if name in OPTIONAL_RECORD_FIELDS
)
# record_row overwrites these four leading columns with the assignment's identity.
IDENTITY_FIELDS = ("run_id", "assignment_id", "agent_id", "target")
assert RECORD_FIELD_NAMES[: len(IDENTITY_FIELDS)] == IDENTITY_FIELDS
_read_record_fields = attrgetter(*RECORD_FIELD_NAMES)
# Built once: json.dumps with non-default options builds a new encoder on every call.
_encode_headers = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _schema_statements() -> list[str]:
    record_columns = ",\n  ".join(
        f"{quote_identifier(name)} {sql_type}" for name, sql_type in RECORD_COLUMNS
    )
    return [
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        """CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  plan_name TEXT NOT NULL,
  plan BLOB NOT NULL,
  state INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  created_unix_ns INTEGER NOT NULL,
  start_at_unix_ns INTEGER NOT NULL DEFAULT 0,
  ended_unix_ns INTEGER NOT NULL DEFAULT 0,
  trace_id TEXT NOT NULL DEFAULT ''
)""",
        """CREATE TABLE IF NOT EXISTS assignments (
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL REFERENCES runs(id),
  agent_id TEXT NOT NULL,
  target TEXT NOT NULL,
  share BLOB NOT NULL,
  state INTEGER NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  final_batch_seq INTEGER NOT NULL DEFAULT 0,
  records_total INTEGER NOT NULL DEFAULT 0,
  diagnosis BLOB
)""",
        "CREATE INDEX IF NOT EXISTS assignments_by_run ON assignments(run_id)",
        """CREATE TABLE IF NOT EXISTS batches (
  assignment_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  record_count INTEGER NOT NULL,
  stored_unix_ns INTEGER NOT NULL,
  PRIMARY KEY (assignment_id, seq)
) WITHOUT ROWID""",
        f"""CREATE TABLE IF NOT EXISTS records (
  {record_columns},
  {HEADERS_COLUMN} TEXT
)""",
        # Serves both the run filter and the per provider x target grouping of reports.
        "CREATE INDEX IF NOT EXISTS records_by_run_group ON records(run_id, provider, target)",
    ]


def record_row(record: pb.Record, identity: Sequence[str] | None = None) -> list[Any]:
    """Convert a record to a row in RECORD_COLUMNS order plus the headers JSON.

    ``identity`` is (run_id, assignment_id, agent_id, target); when given, it replaces
    what the agent wrote, so a record always belongs to the assignment it came with.
    """
    row: list[Any] = list(_read_record_fields(record))
    for position, name in _OPTIONAL_POSITIONS:
        # A non-zero value proves presence, so HasField runs only for zeros (it is slow).
        if not row[position] and not record.HasField(name):
            row[position] = None
    if identity is not None:
        row[: len(IDENTITY_FIELDS)] = identity
    headers = record.rate_limit_headers
    row.append(_encode_headers(dict(headers)) if headers else None)
    return row


def row_to_record(row: Sequence[Any]) -> pb.Record:
    """Rebuild a pb.Record from a full records row (RECORD_COLUMNS order plus headers)."""
    record = pb.Record()
    for name, value in zip(RECORD_FIELD_NAMES, row, strict=False):
        if value is None:
            continue
        setattr(record, name, bool(value) if name in BOOL_RECORD_FIELDS else value)
    headers_json = row[len(RECORD_FIELD_NAMES)]
    if headers_json:
        record.rate_limit_headers.update(json.loads(headers_json))
    return record


@dataclass(frozen=True)
class RunRow:
    """One row of the runs table, with the plan still serialized."""

    run_id: str
    plan_name: str
    plan: bytes
    state: int
    reason: str
    created_unix_ns: int
    start_at_unix_ns: int
    ended_unix_ns: int
    trace_id: str


@dataclass(frozen=True)
class AssignmentRow:
    """One row of the assignments table plus the number of records stored for it."""

    assignment_id: str
    run_id: str
    agent_id: str
    target: str
    share: bytes
    state: int
    message: str
    final_batch_seq: int
    records_total: int
    diagnosis: bytes | None
    records_stored: int


_RUN_COLUMNS = (
    "id, plan_name, plan, state, reason, created_unix_ns, start_at_unix_ns, ended_unix_ns, trace_id"
)
_ASSIGNMENT_SELECT = """SELECT a.id, a.run_id, a.agent_id, a.target, a.share, a.state, a.message,
  a.final_batch_seq, a.records_total, a.diagnosis,
  COALESCE((SELECT SUM(b.record_count) FROM batches b WHERE b.assignment_id = a.id), 0)
FROM assignments a"""


class Store:
    """Synchronous access to one SQLite database file.

    Methods translate sqlite3 errors into StoreError. Call them from one thread at a
    time, as StoreWorker does, because the connection has no lock of its own.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            # check_same_thread=False because the connection is opened on the caller's
            # thread and then used only by the StoreWorker thread.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the database {self.path}: {exc}; "
                "check that the directory exists and is writable"
            ) from exc
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _schema_statements():
                conn.execute(statement)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            found = row[0] if row else None
            if found is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif found > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {found} is newer than this llmping ({SCHEMA_VERSION}); "
                    "upgrade llmping or use another --db file"
                )
            # Migrations from older versions go here once SCHEMA_VERSION passes 1.
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"closing the database {self.path} failed: {exc}") from exc

    def schema_version(self) -> int:
        row = self._fetchone("SELECT MAX(version) FROM schema_version", ())
        return int(row[0]) if row else 0

    # -- runs and assignments ------------------------------------------------------

    def insert_run(self, run: RunRow, assignments: Sequence[AssignmentRow]) -> None:
        """Insert a run and its assignments in one transaction."""
        run_values = (
            run.run_id,
            run.plan_name,
            run.plan,
            run.state,
            run.reason,
            run.created_unix_ns,
            run.start_at_unix_ns,
            run.ended_unix_ns,
            run.trace_id,
        )
        assignment_values = [
            (a.assignment_id, a.run_id, a.agent_id, a.target, a.share, a.state, a.message)
            for a in assignments
        ]
        with self._transaction("inserting run " + run.run_id):
            self._conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", run_values
            )
            self._conn.executemany(
                "INSERT INTO assignments (id, run_id, agent_id, target, share, state, message) "
                "VALUES (?,?,?,?,?,?,?)",
                assignment_values,
            )

    def update_run_state(self, run_id: str, state: int, reason: str, ended_unix_ns: int) -> None:
        with self._transaction("updating run " + run_id):
            self._conn.execute(
                "UPDATE runs SET state = ?, reason = ?, ended_unix_ns = ? WHERE id = ?",
                (state, reason, ended_unix_ns, run_id),
            )

    def update_assignment(
        self,
        assignment_id: str,
        state: int,
        message: str,
        final_batch_seq: int,
        records_total: int,
        diagnosis: bytes | None,
    ) -> None:
        with self._transaction("updating assignment " + assignment_id):
            self._conn.execute(
                "UPDATE assignments SET state = ?, message = ?, final_batch_seq = ?, "
                "records_total = ?, diagnosis = COALESCE(?, diagnosis) WHERE id = ?",
                (state, message, final_batch_seq, records_total, diagnosis, assignment_id),
            )

    def set_assignment_message(self, assignment_id: str, message: str) -> None:
        with self._transaction("updating assignment " + assignment_id):
            self._conn.execute(
                "UPDATE assignments SET message = ? WHERE id = ?", (message, assignment_id)
            )

    def get_run(self, run_id: str) -> RunRow | None:
        row = self._fetchone(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return RunRow(*row) if row else None

    def list_runs(self, limit: int) -> list[RunRow]:
        rows = self._fetchall(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created_unix_ns DESC, id LIMIT ?", (limit,)
        )
        return [RunRow(*row) for row in rows]

    def runs_in_states(self, states: Sequence[int]) -> list[RunRow]:
        marks = ", ".join("?" for _ in states)
        rows = self._fetchall(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE state IN ({marks}) ORDER BY created_unix_ns",
            tuple(states),
        )
        return [RunRow(*row) for row in rows]

    def assignments_for_run(self, run_id: str) -> list[AssignmentRow]:
        rows = self._fetchall(
            _ASSIGNMENT_SELECT + " WHERE a.run_id = ? ORDER BY a.target, a.agent_id", (run_id,)
        )
        return [AssignmentRow(*row) for row in rows]

    def get_assignment(self, assignment_id: str) -> AssignmentRow | None:
        row = self._fetchone(_ASSIGNMENT_SELECT + " WHERE a.id = ?", (assignment_id,))
        return AssignmentRow(*row) if row else None

    # -- batches and records -------------------------------------------------------

    def insert_batch(
        self,
        assignment_id: str,
        seq: int,
        records: Sequence[pb.Record],
        identity: Sequence[str] | None = None,
    ) -> bool:
        """Store a batch and its records in one transaction, exactly once.

        Returns False, and stores nothing, when (assignment_id, seq) is already stored.
        ``identity`` is passed to record_row.
        """
        if identity is not None and len(identity) != len(IDENTITY_FIELDS):
            raise ValueError(f"identity must be {IDENTITY_FIELDS}, got {identity!r}")
        rows = [record_row(record, identity) for record in records]
        with self._transaction(f"storing batch {seq} of assignment {assignment_id}"):
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO batches (assignment_id, seq, record_count, stored_unix_ns) "
                "VALUES (?, ?, ?, ?)",
                (assignment_id, seq, len(rows), time.time_ns()),
            )
            if cursor.rowcount == 0:
                return False
            self._conn.executemany(_INSERT_RECORD_SQL, rows)
        return True

    def batch_record_count(self, assignment_id: str, seq: int) -> int:
        """Return how many records the stored batch has; 0 when it is not stored."""
        row = self._fetchone(
            "SELECT record_count FROM batches WHERE assignment_id = ? AND seq = ?",
            (assignment_id, seq),
        )
        return int(row[0]) if row else 0

    def stored_seqs(self, assignment_id: str) -> dict[int, int]:
        """Return {seq: record_count} for every batch stored for the assignment."""
        rows = self._fetchall(
            "SELECT seq, record_count FROM batches WHERE assignment_id = ?", (assignment_id,)
        )
        return {int(seq): int(count) for seq, count in rows}

    def count_records(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Return {target: (records, error records)} for a run, warm-up included."""
        rows = self._fetchall(
            "SELECT target, COUNT(*), SUM(error_class != '') FROM records WHERE run_id = ? "
            "GROUP BY target",
            (run_id,),
        )
        return {str(target): (int(total), int(errors or 0)) for target, total, errors in rows}

    def iter_records(self, run_id: str) -> Iterator[pb.Record]:
        """Yield every stored record of a run as a pb.Record, in insert order."""
        cursor = self._execute(
            f"SELECT {_RECORD_COLUMN_LIST} FROM records WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        for row in cursor:
            yield row_to_record(row)

    def open_reader(self) -> sqlite3.Connection:
        """Open a separate read-only connection, for work that runs off the writer thread."""
        return open_reader(self.path)

    # -- helpers -------------------------------------------------------------------

    def _transaction(self, action: str) -> _Transaction:
        return _Transaction(self._conn, action, self.path)

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"query on {self.path} failed: {exc}") from exc

    def _fetchone(self, sql: str, params: Sequence[Any]) -> Any:
        try:
            return self._conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"query on {self.path} failed: {exc}") from exc

    def _fetchall(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"query on {self.path} failed: {exc}") from exc


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back and translated to StoreError on failure."""

    def __init__(self, conn: sqlite3.Connection, action: str, path: Path) -> None:
        self._conn = conn
        self._action = action
        self._path = path

    def __enter__(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self._action} in {self._path} failed: {exc}") from exc

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
                return False
            except sqlite3.Error as commit_exc:
                self._rollback()
                raise StoreError(
                    f"{self._action} in {self._path} failed: {commit_exc}"
                ) from commit_exc
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{self._action} in {self._path} failed: {exc}") from exc
        return False

    def _rollback(self) -> None:
        # A failed COMMIT may already have ended the transaction.
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


def open_reader(path: str | Path) -> sqlite3.Connection:
    """Open a read-only connection to an existing store file."""
    try:
        return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path} for reading: {exc}") from exc


P = ParamSpec("P")
T = TypeVar("T")


class StoreWorker:
    """Runs blocking Store calls on one dedicated thread, in the order they were made."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmping-store")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        """Close the store after every call already submitted has run."""
        await self.call(self.store.close)
        self._executor.shutdown(wait=True)
