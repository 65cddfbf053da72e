"""The SQLite store: schema, exactly-once batches, round trips and error translation."""

from __future__ import annotations

import sqlite3

import pytest

from llmping.controller.store import (
    HEADERS_COLUMN,
    RECORD_COLUMNS,
    SCHEMA_VERSION,
    AssignmentRow,
    RunRow,
    Store,
    StoreWorker,
)
from llmping.errors import StoreError
from llmping.v1 import llmping_pb2 as pb

IDENTITY = ("run-1", "run-1-a1", "agent-1", "tokyo")


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store.db")
    yield store
    store.close()


def insert_run(store: Store, run_id: str = "run-1") -> None:
    run = RunRow(run_id, "plan", b"", pb.RUNNING, "", 1, 2, 0, "trace")
    assignment = AssignmentRow(
        f"{run_id}-a1", run_id, "agent-1", "tokyo", b"", 0, "", 0, 0, None, 0
    )
    store.insert_run(run, [assignment])


def test_controller_store_columns_cover_record():
    scalar_fields = [
        field.name for field in pb.Record.DESCRIPTOR.fields if field.name != HEADERS_COLUMN
    ]

    assert [name for name, _ in RECORD_COLUMNS] == scalar_fields


def test_controller_store_pragmas_and_version(store):
    conn = sqlite3.connect(store.path)
    try:
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()

    assert journal_mode == "wal"
    assert store.schema_version() == SCHEMA_VERSION
    assert {"runs", "assignments", "batches", "records", "schema_version"} <= tables


def test_controller_store_batch_exactly_once(store, make_record):
    insert_run(store)
    records = [make_record(i) for i in range(3)]

    first = store.insert_batch("run-1-a1", 1, records, IDENTITY)
    again = store.insert_batch("run-1-a1", 1, records, IDENTITY)
    second = store.insert_batch("run-1-a1", 2, records[:1], IDENTITY)

    assert first is True
    assert again is False
    assert second is True
    assert store.stored_seqs("run-1-a1") == {1: 3, 2: 1}
    assert len(list(store.iter_records("run-1"))) == 4
    assert store.get_assignment("run-1-a1").records_stored == 4


def test_controller_store_record_round_trip(store, make_record):
    insert_run(store)
    record = make_record(
        7,
        ttft_ms=None,
        e2e_ms=812.5,
        error_class="http_429",
        error_detail="Too Many Requests",
        warmup=True,
        connection_reused=True,
        output_tokens_estimated=True,
        retry_after_s=0.0,
        http_status=429,
        attempt=2,
        clock_offset_ns=-1234,
    )
    record.rate_limit_headers["x-ratelimit-remaining-requests"] = "0"

    store.insert_batch("run-1-a1", 1, [record], IDENTITY)
    loaded = next(store.iter_records("run-1"))

    expected = pb.Record()
    expected.CopyFrom(record)
    expected.run_id, expected.assignment_id, expected.agent_id, expected.target = IDENTITY
    assert loaded == expected
    assert not loaded.HasField("ttft_ms")
    assert loaded.HasField("retry_after_s")
    assert not loaded.HasField("dns_ms")


def test_controller_store_identity_overrides_agent(store, make_record):
    insert_run(store)
    record = make_record(0, target="somewhere-else")
    record.run_id = "forged"

    store.insert_batch("run-1-a1", 1, [record], IDENTITY)
    loaded = next(store.iter_records("run-1"))

    assert loaded.target == "tokyo"
    assert loaded.agent_id == "agent-1"


def test_controller_store_counts_by_target(store, make_record):
    insert_run(store)
    records = [make_record(0), make_record(1, error_class="timeout"), make_record(2)]

    store.insert_batch("run-1-a1", 1, records, IDENTITY)

    assert store.count_records("run-1") == {"tokyo": (3, 1)}
    assert store.count_records("other") == {}


def test_controller_store_run_state_updates(store):
    insert_run(store)

    store.update_run_state("run-1", pb.PARTIAL, "agent lost", 99)
    store.update_assignment("run-1-a1", 3, "done", 4, 10, b"\x08\x01")
    run = store.get_run("run-1")
    assignment = store.get_assignment("run-1-a1")

    assert (run.state, run.reason, run.ended_unix_ns) == (pb.PARTIAL, "agent lost", 99)
    assert assignment.final_batch_seq == 4
    assert assignment.records_total == 10
    assert assignment.diagnosis == b"\x08\x01"
    assert [r.run_id for r in store.runs_in_states([pb.PARTIAL])] == ["run-1"]
    assert store.get_run("missing") is None


def test_controller_store_open_error(tmp_path):
    with pytest.raises(StoreError) as raised:
        Store(tmp_path / "no-such-dir" / "x.db")

    assert "no-such-dir" in str(raised.value)
    assert isinstance(raised.value.__cause__, sqlite3.Error)


def test_controller_store_newer_schema_rejected(tmp_path):
    path = tmp_path / "future.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()

    with pytest.raises(StoreError, match="newer than this llmping"):
        Store(path)


def test_controller_store_write_error_translated(store, make_record):
    insert_run(store)
    store._conn.execute("DROP TABLE records")

    with pytest.raises(StoreError) as raised:
        store.insert_batch("run-1-a1", 1, [make_record(0)], IDENTITY)

    assert "batch 1 of assignment run-1-a1" in str(raised.value)
    assert store.stored_seqs("run-1-a1") == {}


async def test_controller_store_worker_orders_calls(store, make_record):
    insert_run(store)
    worker = StoreWorker(store)
    results = []
    for seq in (1, 2, 1, 3, 2):
        results.append(await worker.call(store.insert_batch, "run-1-a1", seq, [make_record(seq)]))
    await worker.close()

    assert results == [True, True, False, True, False]
