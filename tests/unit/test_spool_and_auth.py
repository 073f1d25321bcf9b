"""The spool's durability format, the key ring and the timestamp window: no broker needed."""

from __future__ import annotations

from pydantic import SecretStr
import pytest

from hookstream.ingest.auth import KeyRing, timestamp_fresh
from hookstream.ingest.spool import Spool, SpooledRecord, SpoolFull


def _record(i: int) -> SpooledRecord:
    return SpooledRecord("topic", f"k{i}".encode(), b'{"v":%d}' % i, [("hs-a", b"1"), ("hs-b", b"\x00\xff")])


def test_spooled_records_survive_a_restart_byte_for_byte(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    for i in range(3):
        spool.append(_record(i))
    spool.close()
    reopened = Spool(tmp_path, 1 << 20)
    assert reopened.depth == 3
    claimed = list(reopened.claim_segments())
    assert [r for _, records in claimed for r in records] == [_record(i) for i in range(3)]


def test_a_torn_tail_is_ignored_and_earlier_records_are_kept(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(_record(0))
    spool.append(_record(1))
    spool.close()
    [segment] = tmp_path.glob("*.seg")
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # the process died mid-write of the second record
    records = [r for _, rs in Spool(tmp_path, 1 << 20).claim_segments() for r in rs]
    assert records == [_record(0)]


def test_the_spool_refuses_records_past_its_bound(tmp_path):
    spool = Spool(tmp_path, 4096)
    with pytest.raises(SpoolFull):
        for i in range(1000):
            spool.append(_record(i))
    assert 0 < spool.bytes <= 4096


def test_forwarded_segments_are_deleted_and_the_depth_follows(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(_record(0))
    spool.seal()
    for path, records in spool.claim_segments():
        spool.done(path, len(records))
    assert spool.depth == 0 and list(tmp_path.glob("*.seg")) == []


def test_a_segment_being_written_is_not_forwarded(tmp_path):
    writer = Spool(tmp_path, 1 << 20)
    writer.append(_record(0))
    other = Spool(tmp_path, 1 << 20)  # another receiver sharing the directory
    assert list(other.claim_segments()) == []  # locked by its writer
    writer.seal()
    assert len(list(other.claim_segments())) == 1


def test_key_ring_accepts_any_configured_key_only():
    ring = KeyRing([SecretStr("old-key-000000001"), SecretStr("new-key-000000002")])
    assert ring.verify("old-key-000000001") and ring.verify("new-key-000000002")
    for wrong in (None, "", "old-key-00000000", "old-key-0000000011", "NEW-KEY-000000002"):
        assert not ring.verify(wrong)


def test_key_ring_compares_with_compare_digest_against_every_key_whatever_matches(monkeypatch):
    """ARCHITECTURE 8: keys compared in constant time — compare_digest for each configured key, no early exit
    (the time taken says neither whether nor which key matched)."""
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("hookstream.ingest.auth.hmac.compare_digest", spy)
    keys = ["first-key-0000001", "second-key-000002", "third-key-0000003"]
    ring = KeyRing([SecretStr(k) for k in keys])
    for presented, ok in (("first-key-0000001", True), ("third-key-0000003", True), ("wrong-key-0000004", False)):
        calls.clear()
        assert ring.verify(presented) is ok
        assert calls == [(presented.encode(), k.encode()) for k in keys]


def test_a_spooled_record_is_fsynced_with_its_new_segment_directory_before_append_returns(tmp_path, monkeypatch):
    """ARCHITECTURE 2: the spool is an fsync'd append-only file — the data, and the directory entry of a new
    segment, are on disk when append returns (a reopen alone would not show it: the page cache survives)."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(_record(1))
    (segment,) = [p for p in tmp_path.iterdir() if p.suffix == ".seg"]
    assert str(tmp_path) in synced and str(segment) in synced
    assert synced.index(str(tmp_path)) < synced.index(str(segment))  # the segment's name first, then its data
    synced.clear()
    spool.append(_record(2))
    assert synced == [str(segment)]  # an existing segment: one fsync of the data


def test_key_ring_without_keys_refuses_to_start():
    with pytest.raises(ValueError):
        KeyRing([])


@pytest.mark.parametrize("header, ok", [(None, True), ("1000000", True), ("999999", True), ("700000", True),
                                        ("699999", False), ("1300001", False), ("soon", False)])
def test_timestamp_window_is_milliseconds_either_side(header, ok):
    assert timestamp_fresh(header, window_s=300, now_s=1000.0) is ok


def test_timestamp_window_zero_turns_the_check_off():
    assert timestamp_fresh("1", window_s=0, now_s=1e9)


def test_concurrent_appends_are_group_committed_and_all_durable(tmp_path):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hookstream.ingest.spool import SpoolWriter

    spool = Spool(tmp_path, 1 << 20)
    io = ThreadPoolExecutor(max_workers=1)

    async def many() -> None:
        writer = SpoolWriter(spool, io)
        await asyncio.gather(*(writer.append(_record(i)) for i in range(200)))

    asyncio.run(many())
    spool.close()
    io.shutdown()
    records = [r for _, rs in Spool(tmp_path, 1 << 20).claim_segments() for r in rs]
    assert records == [_record(i) for i in range(200)]  # every one on disk, in arrival order


def test_group_commit_refuses_exactly_the_records_past_the_bound(tmp_path):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hookstream.ingest.spool import SpoolWriter

    frame = len(_record(0).encode())
    spool = Spool(tmp_path, 4096)
    io = ThreadPoolExecutor(max_workers=1)

    async def many() -> list:
        writer = SpoolWriter(spool, io)
        return await asyncio.gather(*(writer.append(_record(i)) for i in range(100)), return_exceptions=True)

    results = asyncio.run(many())
    io.shutdown()
    kept = [r for r in results if r is None]
    assert len(kept) == 4096 // frame
    assert all(isinstance(r, SpoolFull) for r in results[len(kept):])
    assert spool.depth == len(kept)
