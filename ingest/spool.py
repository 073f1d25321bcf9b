"""The local durable spool: fsync'd append-only segments for events the platform never retries."""

from __future__ import annotations

import asyncio
import base64
import collections
import fcntl
import hashlib
import json
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from hookstream import metrics
from hookstream.logs import get_logger

log = get_logger(__name__)

_FRAME = struct.Struct(">II")  # payload length, crc32(payload)
_SUFFIX = ".seg"
_LATE_ACKS_KEPT = 10_000  # late acknowledgements remembered until the forwarder meets their record


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def encode(self) -> bytes:
        payload = json.dumps(
            {
                "t": self.topic,
                "k": None if self.key is None else base64.b64encode(self.key).decode(),
                "v": base64.b64encode(self.value).decode(),
                "h": [[k, base64.b64encode(v).decode()] for k, v in self.headers],
            },
            separators=(",", ":"),
        ).encode()
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    def fingerprint(self) -> bytes:
        return fingerprint(self.topic, self.key, self.value)

    @classmethod
    def decode(cls, payload: bytes) -> SpooledRecord:
        doc = json.loads(payload)
        return cls(
            topic=doc["t"],
            key=None if doc["k"] is None else base64.b64decode(doc["k"]),
            value=base64.b64decode(doc["v"]),
            headers=[(k, base64.b64decode(v)) for k, v in doc["h"]],
        )


class SpoolFull(Exception):
    """The spool reached its size bound."""


class Spool:
    """Segments `<dir>/<writer>-<n>.seg`, each locked (flock) by the process writing or forwarding it.

    Blocking file I/O: call from a worker thread, never from the event loop. A segment whose writer
    died is unlocked, so any receiver sharing the directory forwards it.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._active: int | None = None  # fd of the segment being written, flock'ed
        self._active_path: Path | None = None
        self._active_records = 0
        self.depth, self.bytes = self._scan()
        self._publish_gauges()
        # Records spooled because their ack was late, then acknowledged after all: already on Kafka.
        # Touched on the event loop only (the ack callback and the forwarder's filter).
        self._late_acks: collections.OrderedDict[bytes, int] = collections.OrderedDict()

    def acknowledged_late(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Kafka acknowledged a record after its request gave up on it and spooled it."""
        print_ = fingerprint(topic, key, value)
        self._late_acks[print_] = self._late_acks.get(print_, 0) + 1
        if len(self._late_acks) > _LATE_ACKS_KEPT:
            self._late_acks.popitem(last=False)

    def already_on_kafka(self, record: SpooledRecord) -> bool:
        """True once per late acknowledgement of this record: forwarding it again would duplicate it."""
        print_ = record.fingerprint()
        count = self._late_acks.get(print_)
        if not count:
            return False
        if count == 1:
            del self._late_acks[print_]
        else:
            self._late_acks[print_] = count - 1
        return True

    def _scan(self) -> tuple[int, int]:
        depth = size = 0
        for path in self.directory.glob(f"*{_SUFFIX}"):
            records = sum(1 for _ in _read_frames(path))
            depth += records
            size += path.stat().st_size
        return depth, size

    def _publish_gauges(self) -> None:
        metrics.spool_depth.set(self.depth)
        metrics.spool_bytes.set(self.bytes)

    def append(self, record: SpooledRecord) -> None:
        """Write and fsync one record; SpoolFull past the bound."""
        if self.append_many([record]) == 0:
            raise SpoolFull(f"spool holds {self.bytes} of {self.max_bytes} bytes")

    def append_many(self, records: list[SpooledRecord]) -> int:
        """Write as many of `records` as the bound allows with one write and one fsync (group commit).

        Returns how many were written, in order; the rest did not fit.
        """
        frames: list[bytes] = []
        size = self.bytes
        for record in records:
            frame = record.encode()
            if size + len(frame) > self.max_bytes:
                break
            frames.append(frame)
            size += len(frame)
        rejected = len(records) - len(frames)
        if rejected:
            metrics.spool_rejected.inc(rejected)
        if not frames:
            return 0
        if self._active is None:
            self._open_segment()
        assert self._active is not None
        data = b"".join(frames)
        os.write(self._active, data)
        os.fsync(self._active)
        self._active_records += len(frames)
        self.depth += len(frames)
        self.bytes += len(data)
        metrics.spool_written.inc(len(frames))
        self._publish_gauges()
        return len(frames)

    def _open_segment(self) -> None:
        self._seq += 1
        path = self.directory / f"{self._writer}-{self._seq:08d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _fsync_dir(self.directory)
        self._active, self._active_path, self._active_records = fd, path, 0

    def seal(self) -> None:
        """Close the segment being written, so that it can be forwarded."""
        if self._active is not None:
            fcntl.flock(self._active, fcntl.LOCK_UN)
            os.close(self._active)
            self._active = self._active_path = None

    def claim_segments(self) -> Iterator[tuple[Path, list[SpooledRecord]]]:
        """Yield sealed segments (oldest first) locked for this process, with their records.

        The caller forwards the records, then calls `done(path, len(records))` before asking for the
        next segment; a segment not marked done is unlocked and retried later.
        """
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"), key=lambda p: (p.stat().st_mtime, p.name))
        for path in paths:
            if path == self._active_path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another receiver forwarded it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                if not path.exists():
                    continue
                yield path, [SpooledRecord.decode(p) for p in _read_frames(path)]
            finally:
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                except OSError:
                    pass

    def done(self, path: Path, records: int) -> None:
        """A claimed segment's records are all on Kafka: delete it."""
        size = path.stat().st_size
        path.unlink()
        _fsync_dir(self.directory)
        self.depth = max(0, self.depth - records)
        self.bytes = max(0, self.bytes - size)
        metrics.spool_forwarded.inc(records)
        self._publish_gauges()

    def close(self) -> None:
        self.seal()


class SpoolWriter:
    """Appends from concurrent requests, group-committed: whatever is waiting goes in one fsync.

    An outage sends every never-retried event here at once; one fsync each would make the spool the
    bottleneck (and the platform does not retry what times out).
    """

    def __init__(self, spool: Spool, io: Executor) -> None:
        self._spool = spool
        self._io = io
        self._waiting: list[tuple[SpooledRecord, asyncio.Future[None]]] = []
        self._flushing = False

    async def append(self, record: SpooledRecord) -> None:
        """Resolve once the record is fsync'd; SpoolFull or OSError otherwise."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((record, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    written = await loop.run_in_executor(
                        self._io, self._spool.append_many, [record for record, _ in batch])
                except OSError as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for index, (_, future) in enumerate(batch):
                    if future.done():
                        continue
                    if index < written:
                        future.set_result(None)
                    else:
                        future.set_exception(SpoolFull(f"spool bound {self._spool.max_bytes} bytes reached"))
        finally:
            self._flushing = False


def fingerprint(topic: str, key: bytes | None, value: bytes) -> bytes:
    digest = hashlib.blake2b(topic.encode(), digest_size=16)
    digest.update(b"\0" if key is None else b"\1" + len(key).to_bytes(4, "big") + key)
    digest.update(value)
    return digest.digest()


def _read_frames(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    pos = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        start, end = pos + _FRAME.size, pos + _FRAME.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            # a torn tail: the process died mid-write, before fsync returned (so never answered)
            log.warning("spool.torn_frame", segment=path.name, at=pos)
            return
        yield data[start:end]
        pos = end


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
