"""Batch numbering, the unacked buffer, resend order and update confirmation."""

from __future__ import annotations

import asyncio

from llmping.agent.batches import BatchAssembler, Outbox
from llmping.v1 import llmping_pb2 as pb


def collect() -> tuple[list[pb.AgentMessage], BatchAssembler]:
    sent: list[pb.AgentMessage] = []
    return sent, BatchAssembler("a-1", sent.append, max_records=3)


def test_assembler_cuts_full_batches() -> None:
    sent, assembler = collect()

    for index in range(7):
        assembler.add(pb.Record(index=index))

    assert [m.result_batch.seq for m in sent] == [1, 2]
    assert [len(m.result_batch.records) for m in sent] == [3, 3]
    assembler.flush()
    assert [m.result_batch.seq for m in sent] == [1, 2, 3]
    assert [r.index for r in sent[2].result_batch.records] == [6]
    assert assembler.last_seq == 3
    assert assembler.records_total == 7
    assert all(m.result_batch.assignment_id == "a-1" for m in sent)


def test_assembler_flush_without_records_sends_nothing() -> None:
    sent, assembler = collect()

    assembler.flush()

    assert sent == []
    assert assembler.last_seq == 0


def batch(assignment_id: str, seq: int, records: int = 1) -> pb.AgentMessage:
    message = pb.AgentMessage()
    message.result_batch.assignment_id = assignment_id
    message.result_batch.seq = seq
    message.result_batch.records.extend(pb.Record(index=i) for i in range(records))
    return message


def test_outbox_resends_unacked_in_order() -> None:
    outbox = Outbox()
    for assignment_id, seq in [("a", 1), ("b", 1), ("a", 2), ("a", 3)]:
        outbox.add_batch(batch(assignment_id, seq, records=2))

    assert outbox.ack("a", 2)
    assert not outbox.ack("a", 2)

    resent = [(m.result_batch.assignment_id, m.result_batch.seq) for m in outbox.resend_messages()]
    assert resent == [("a", 1), ("b", 1), ("a", 3)]
    assert outbox.batch_count == 3
    assert outbox.record_count == 6
    assert outbox.assignment_ids() == {"a", "b"}


def test_outbox_updates_follow_batches_until_confirmed() -> None:
    outbox = Outbox()
    outbox.add_batch(batch("a", 1))
    running = pb.AssignmentUpdate(assignment_id="a", state=pb.AssignmentUpdate.RUNNING)
    finished = pb.AssignmentUpdate(assignment_id="a", state=pb.AssignmentUpdate.FINISHED)
    outbox.set_update(running)
    outbox.set_update(finished)

    kinds = [m.WhichOneof("body") for m in outbox.resend_messages()]
    assert kinds == ["result_batch", "assignment_update"]

    # Written as message 5 of connection 2; a heartbeat written as message 5 does not
    # confirm it, one written later on another connection neither, message 6 does.
    outbox.mark_update_sent(finished, (2, 5))
    outbox.confirm_updates((2, 5))
    outbox.confirm_updates((3, 9))
    assert "a" in outbox.assignment_ids()
    outbox.confirm_updates((2, 6))
    assert [m.WhichOneof("body") for m in outbox.resend_messages()] == ["result_batch"]


def test_outbox_marks_only_latest_update() -> None:
    outbox = Outbox()
    running = pb.AssignmentUpdate(assignment_id="a", state=pb.AssignmentUpdate.RUNNING)
    finished = pb.AssignmentUpdate(assignment_id="a", state=pb.AssignmentUpdate.FINISHED)
    outbox.set_update(running)
    outbox.set_update(finished)

    outbox.mark_update_sent(running, (1, 1))
    outbox.confirm_updates((1, 2))

    assert outbox.assignment_ids() == {"a"}


def test_outbox_drop_assignment() -> None:
    outbox = Outbox()
    outbox.add_batch(batch("a", 1, records=4))
    outbox.add_batch(batch("b", 1, records=1))
    outbox.set_update(pb.AssignmentUpdate(assignment_id="a"))

    assert outbox.drop_assignment("a") == 4
    assert outbox.assignment_ids() == {"b"}
    assert outbox.record_count == 1


async def test_outbox_wait_empty() -> None:
    outbox = Outbox()
    outbox.add_batch(batch("a", 1))
    waiter = asyncio.create_task(outbox.wait_empty())
    await asyncio.sleep(0)
    assert not waiter.done()

    outbox.ack("a", 1)

    await asyncio.wait_for(waiter, 1)
