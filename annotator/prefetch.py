"""Per-user buffers of leased records whose images are already rendered.

The click path pops from a buffer (memory only); a background pool refills
it: soft leases from the backend, record rows from the store (or from the
rows kept in memory: at overlap N the same record is read by N people, and
a page reload or a takeover asks for rows read moments ago), images from
the cache. A store read costs about the same for one row as for dozens, and
new records go out in the hand-out order, so a read for a record not in
memory also takes the records that follow it in that order (`READ_AHEAD`):
the next refills find their rows in memory. A record in a buffer is held as
a soft lease, so the scheduler can hand it to someone with nothing else to
do (I5); `pop` notices that when it tries to promote the lease and moves on
to the next slot. Image links are signed when a record is handed out
(`image_url`), not when it is buffered: a record can stay buffered or on
screen longer than a link lives.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from annotator.backend import WorkBackend
from annotator.images import ImageCache, ImageError
from annotator.model import Record

log = logging.getLogger(__name__)

ROWS_KEPT = 4096  # record rows kept in memory (a few MB), the most recently used
READ_AHEAD = 48  # rows read with a missing one: those after it in the hand-out order (one store read <= 64 ids)


@dataclass(frozen=True)
class Slot:
    """A record to show: its row (the image link is signed when it is handed out)."""
    record: Record


class PrefetchBuffers:
    """Lifecycle: used by the service; `close()` stops the refill pool."""

    def __init__(self, backend: WorkBackend, images: ImageCache, depth: int,
                 image_url: Callable[..., str], workers: int = 2, order: Sequence[int] = ()) -> None:
        self._backend = backend
        self._order = list(order)  # the hand-out order, for READ_AHEAD
        self._index = {rid: i for i, rid in enumerate(self._order)}
        self._images = images
        self._depth = depth
        self._image_url = image_url
        self._buffers: dict[str, deque[Slot]] = {}
        self._rows: OrderedDict[int, Record] = OrderedDict()
        self._refilling: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch")
        self._closed = False

    def pop(self, user: str) -> Slot | None:
        """The first buffered record this user still holds, promoted to the screen."""
        while True:
            with self._lock:
                buffer = self._buffers.get(user)
                if not buffer:
                    return None
                slot = buffer.popleft()
            if self._backend.promote(user, slot.record.id):
                return slot

    def peek(self, user: str) -> list[Slot]:
        """The buffered records in the order `pop` hands them out."""
        with self._lock:
            return list(self._buffers.get(user, ()))

    def rows(self, record_ids: Sequence[int]) -> dict[int, Record]:
        """Record rows by id: from memory when recently read, else one store read for the rest."""
        found: dict[int, Record] = {}
        missing = []
        with self._lock:
            for rid in record_ids:
                row = self._rows.get(rid)
                if row is None:
                    missing.append(rid)
                else:
                    self._rows.move_to_end(rid)
                    found[rid] = row
        if missing:
            read = self._backend.records(missing + self._ahead_of(missing))
            with self._lock:
                self._rows.update(read)
                while len(self._rows) > ROWS_KEPT:
                    self._rows.popitem(last=False)
            found.update(read)
        return found

    def _ahead_of(self, missing: list[int]) -> list[int]:
        """Up to READ_AHEAD ids that follow the first missing one in the hand-out order and are not in memory."""
        at = self._index.get(missing[0])
        if at is None:
            return []
        wanted = set(missing)
        with self._lock:
            return [rid for rid in self._order[at + 1:at + 1 + READ_AHEAD] if rid not in self._rows
                    and rid not in wanted]

    def row_in_memory(self, record_id: int) -> Record | None:
        """A record row if it was read recently, with no store read (for the image route's fast path)."""
        with self._lock:
            return self._rows.get(record_id)

    def drop(self, user: str) -> None:
        """Forget a user's buffer (their soft leases are released by the backend)."""
        with self._lock:
            self._buffers.pop(user, None)

    def image_url(self, record_id: int, user: str, number: int = 1) -> str:
        """The link to the record's image `number` for this user as of now (see `Signer.image_url`)."""
        return self._image_url(record_id, user, number=number)

    def refill(self, user: str) -> None:
        """Top up a user's buffer in the background; at most one refill per user at a time.

        It waits until half the buffer is used, so one store read fetches
        several records instead of one per click.
        """
        if self._depth <= 0 or self._closed:
            return
        with self._lock:
            if user in self._refilling or len(self._buffers.get(user, ())) > self._depth // 2:
                return
            self._refilling.add(user)
        try:
            self._pool.submit(self._refill, user)
        except RuntimeError:  # pool shut down
            with self._lock:
                self._refilling.discard(user)

    def _refill(self, user: str) -> None:
        try:
            with self._lock:
                need = self._depth - len(self._buffers.get(user, ()))
            if need <= 0:
                return
            ids = self._backend.lease_soft(user, need)
            if not ids:
                return
            rows = self.rows(ids)
            slots = []
            for rid in ids:
                record = rows.get(rid)
                if record is None:
                    self._backend.release(user, rid)
                    continue
                for number in range(1, record.image_count + 1):
                    path, sha256, _, _ = record.image(number)
                    try:
                        self._images.prepare(sha256, path)
                    except ImageError as exc:  # still shown: the page says the image is broken, skip works
                        log.warning("record %s, image %s: %s", rid, number, exc)
                slots.append(Slot(record))
            with self._lock:
                self._buffers.setdefault(user, deque()).extend(slots)
        except Exception:
            log.exception("refilling the buffer of %s failed", user)
        finally:
            with self._lock:
                self._refilling.discard(user)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
