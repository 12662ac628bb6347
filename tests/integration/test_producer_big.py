"""One transaction of 2 million rows through pgcdc-producer: memory stays bounded by
librdkafka's queue limits (kafka_out.c: queue.buffering.max.kbytes=10240,
queue.buffering.max.messages=50000) because the producer stops reading WAL while
the queue is full, and every row arrives. Counted per partition from the watermarks,
not by reading 2 million records back."""

import time

import pytest

from producer_harness import cdc  # noqa: F401 - pytest fixture

ROWS = 2_000_000
# Bound on the producer's peak RSS. The queue holds at most 10 MB of records, plus
# librdkafka's per-message overhead, copies in produce requests and the producer's own
# buffers (VmHWM measured: 45 MB in a release build, 85-97 MB with ASan). An ASan build adds shadow memory, redzones and a
# quarantine (limited to 16 MB by the harness).
RSS_LIMIT_MB = 128
RSS_LIMIT_MB_ASAN = 200


@pytest.mark.slow
def test_two_million_row_transaction_memory_bounded_and_complete(cdc):
    cdc.create("CREATE TABLE big (id int PRIMARY KEY, v int)", reference=False)
    t0 = time.monotonic()
    cdc.in_schema(f"INSERT INTO big SELECT g, g FROM generate_series(1, {ROWS}) g")
    insert_s = time.monotonic() - t0
    endpos = cdc.lsn()

    t0 = time.monotonic()
    proc = cdc.run(endpos=endpos, timeout=900)
    run_s = time.monotonic() - t0
    rss_mb = proc.max_rss_kb / 1024
    limit = RSS_LIMIT_MB_ASAN if cdc.asan else RSS_LIMIT_MB
    print(f"\n2M-row transaction: insert {insert_s:.1f} s, producer {run_s:.1f} s "
          f"({ROWS / run_s:,.0f} rows/s), peak RSS {rss_mb:.1f} MB "
          f"({'ASan build, ' if cdc.asan else ''}limit {limit} MB)")
    assert f"stopped (endpos reached): {ROWS} changes in 1 transactions" in proc.log()

    marks = cdc.watermarks(cdc.topic("big"))
    per_partition = {p: high - low for p, (low, high) in marks.items()}
    print(f"records per partition: {per_partition}")
    assert sum(per_partition.values()) == ROWS
    # murmur2 over 2M distinct keys: each of the 3 partitions gets about a third.
    assert all(n > ROWS / 4 for n in per_partition.values()), per_partition
    assert rss_mb < limit, f"peak RSS {rss_mb:.1f} MB exceeds {limit} MB"
    # The whole transaction is confirmed: the slot moved past its commit.
    last = cdc.read_at(cdc.topic("big"), 0, marks[0][1] - 1)
    assert last.value["source"]["seq"] < ROWS
    assert cdc.confirmed_flush() > last.value["source"]["commit_lsn"]
