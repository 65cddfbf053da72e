"""Clock offset estimate from heartbeat round trips."""

from __future__ import annotations

import time

from llmping.agent.clock import ClockEstimator, ClockMapping


def test_offset_from_one_reply() -> None:
    clock = ClockEstimator()

    sample = clock.add_reply(sent_unix_ns=1_000, controller_unix_ns=5_000, rtt_ns=200)

    # offset = controller - (sent + received) / 2 = 5000 - (1000 + 1200) / 2
    assert sample.offset_ns == 3_900
    assert clock.offset_ns == 3_900
    assert clock.uncertainty_ns == 100
    assert clock.uncertainty_ms == 0.0001


def test_no_estimate_before_first_reply() -> None:
    clock = ClockEstimator()

    assert not clock.has_estimate
    assert clock.offset_ns == 0
    assert clock.uncertainty_ns == 0


def test_smallest_round_trip_wins() -> None:
    clock = ClockEstimator(window=8)
    clock.add_reply(sent_unix_ns=0, controller_unix_ns=10_500, rtt_ns=1_000)
    clock.add_reply(sent_unix_ns=0, controller_unix_ns=10_050, rtt_ns=100)
    clock.add_reply(sent_unix_ns=0, controller_unix_ns=10_900, rtt_ns=2_000)

    assert clock.offset_ns == 10_000
    assert clock.uncertainty_ns == 50


def test_best_sample_expires_from_window() -> None:
    clock = ClockEstimator(window=3)
    clock.add_reply(sent_unix_ns=0, controller_unix_ns=10_050, rtt_ns=100)
    for _ in range(3):
        clock.add_reply(sent_unix_ns=0, controller_unix_ns=20_500, rtt_ns=1_000)

    assert clock.offset_ns == 20_000
    assert clock.uncertainty_ns == 500


def test_mapping_round_trip() -> None:
    mapping = ClockMapping(perf_ns=5_000, unix_ns=1_700_000_000_000_000_000, offset_ns=250_000)

    controller_ns = mapping.perf_to_controller_unix_ns(8_000)

    assert controller_ns == 1_700_000_000_000_000_000 + 250_000 + 3_000
    assert mapping.controller_unix_to_perf_ns(controller_ns) == 8_000


def test_controller_start_to_local_perf() -> None:
    clock = ClockEstimator()
    # The controller clock runs 2 s ahead of this host.
    clock.add_reply(
        sent_unix_ns=time.time_ns(), controller_unix_ns=time.time_ns() + 2_000_000_000, rtt_ns=0
    )
    mapping = clock.mapping()

    start_at_ns = time.time_ns() + 2_000_000_000 + 500_000_000
    local_start_ns = mapping.controller_unix_to_perf_ns(start_at_ns)

    # The start is 0.5 s ahead on the local perf counter, within scheduling noise.
    assert abs((local_start_ns - time.perf_counter_ns()) - 500_000_000) < 20_000_000
