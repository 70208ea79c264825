"""In-memory assignment of records to annotators: leases, overlap, priorities.

Pure and thread-safe: no I/O, nothing imported from the project but its domain
(model.py) and the pure gold rules (gold.py), time is passed in. Deciding
"what next" in memory takes microseconds and is correct by construction (one lock), where the same decision in SQL took milliseconds and
raced (see notes/duckdb-facts.md, section 4). The store keeps the facts
(answers); this module is rebuilt from them at start-up with `restore`.
"""

from __future__ import annotations

import heapq
import operator
import threading
import time
from array import array
from bisect import bisect_left, insort
from itertools import islice
from typing import Iterable, Mapping, Sequence

from annotator.gold import GoldPlan, QuotaFull, gold_due, gold_rank
from annotator.model import LeaseKind, QueueState, SubmitOutcome, record_status

__all__ = ["Scheduler"]

_AVAIL = 1  # incomplete and submitted + leases < target: can be leased
_FULL = 2   # incomplete but fully held: frees up when a lease ends


class _Segment:
    """A run of the hand-out order, kept as the caller gave it (a range stays a range).

    Position lookups for lists are built on first need: nothing if the list
    is increasing (bisect on it), else two compact int64 arrays, because a
    dict over 1M ids would cost ~70 MB for a start-up-only lookup.
    """

    __slots__ = ("start", "ids", "_increasing", "_keys", "_positions")

    def __init__(self, start: int, ids: Sequence[int]) -> None:
        self.start = start
        self.ids = ids
        self._increasing: bool | None = None
        self._keys: array | None = None
        self._positions: array | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def prepare(self) -> None:
        if isinstance(self.ids, range) or self._increasing is not None:
            return
        ids = self.ids
        self._increasing = all(a < b for a, b in zip(ids, islice(ids, 1, None)))
        if not self._increasing:
            perm = sorted(range(len(ids)), key=ids.__getitem__)
            self._keys = array("q", [ids[i] for i in perm])
            self._positions = array("q", perm)

    def index(self, rid: int) -> int:
        """Local index of `rid`, or -1."""
        ids = self.ids
        if isinstance(ids, range):
            return ids.index(rid) if rid in ids else -1
        self.prepare()
        if self._increasing:
            i = bisect_left(ids, rid)
            return i if i < len(ids) and ids[i] == rid else -1
        keys = self._keys
        assert keys is not None and self._positions is not None
        i = bisect_left(keys, rid)
        return self._positions[i] if i < len(keys) and keys[i] == rid else -1


class _Rec:
    """A touched record. Fresh records have no object: the tail of `order` costs nothing."""

    __slots__ = ("rid", "pos", "submitted", "skipped", "holders", "extra", "complete", "partial", "where", "gold",
                 "handed")

    def __init__(self, rid: int, pos: int, gold: bool = False) -> None:
        self.rid = rid
        self.pos = pos
        self.submitted: set[str] = set()
        self.skipped: set[str] | None = None
        self.holders: set[str] | None = None
        self.extra = 0
        self.complete = False
        self.partial = False
        self.where = 0  # 0: in no list (new or complete), _AVAIL or _FULL
        self.gold = gold  # a gold record: outside the order, no overlap, counts nowhere (issue 17)
        # gold only: everyone ever granted a lease on it, so a lease that expired or was released unanswered
        # does not bring it back to them (each gold record at most once per person)
        self.handed: set[str] | None = set() if gold else None


class Scheduler:
    """Who gets which record next, with leases, overlap and priorities.

    Contract (DESIGN.md, "Assignment contract"), with N = overlap, and the
    target of a record = N + extra answers asked for by `reopen`:

    - I1: `next` and `lease_soft` never hand a user a record they submitted or
      skipped (their "seen" set). Going back to edit is the caller's business.
    - I2: for every record, submitted + active leases <= target. The only way
      over is an answer that arrives without a lease (expired, released,
      after a restart, or a skip turned into a submission): it is counted as
      an extra answer, never dropped.
    - I3: `next`/`state` say "done" only when no record is left that this user
      has not seen and that is not complete; when everything left is leased
      by others they say "waiting", with how many and when the first lease
      can end (`frees_at`).
    - I4: a lease expires when its holder has been idle (no call naming them)
      longer than `lease_ttl`; `release` ends leases at once (session ended).
    - I5: `next` for a user with nothing else available takes a record that
      sits as a soft (prefetched, not yet shown) lease in another user's
      buffer; that user's `promote` of it then returns False.

    Priority: records already started (touched and not complete) in `order`
    position first, so open work gets finished, then fresh records in order.

    Leases are "soft" (in a prefetch buffer) or "hard" (on screen, at most one
    per user). Expiry is by user, not by lease: `touch` is O(1) and a heap of
    user deadlines is swept lazily at the start of every call that carries a
    time, so leases are always exact at that time. Methods without a `now`
    (`current`, `counts`, `release`, ...) see leases as of the latest time any
    call carried.

    Gold records and quotas (issue 17, `gold` and `plan`): gold records are
    outside `order` and every count; each person is handed each at most once,
    even when that lease ended unanswered (expired, released), at `plan.rate`
    of their hand-outs after `plan.warmup` gold ones
    (gold.gold_due), with no overlap and no completion. A person whose
    submitted answers plus held leases reach their quota gets no new lease and
    is told "quota" (never "done" while work remains); an answer of theirs
    without a lease that would add to their submitted answers then is refused
    (QuotaFull), so submitted answers never pass the quota.

    Memory is O(touched records + users); `order` is kept as given (a
    `range` of 1M ids costs nothing). Every public method holds one lock for
    microseconds.

    Example:
        >>> s = Scheduler(range(3), overlap=1, lease_ttl=60)
        >>> s.next("ann", now=0).record_id
        0
        >>> s.submit("ann", 0, now=1)
        'new'
    """

    def __init__(self, order: Sequence[int], overlap: int, lease_ttl: float, *, gold: Sequence[int] = (),
                 plan: GoldPlan = GoldPlan()) -> None:
        if overlap < 1:
            raise ValueError("overlap must be at least 1")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        self._lock = threading.Lock()
        self._overlap = int(overlap)
        self._ttl = float(lease_ttl)
        self._segs: list[_Segment] = [_Segment(0, order)] if len(order) else []
        self._n = len(order)
        self._fresh = 0        # position before which every record is touched
        self._fresh_seg = 0
        self._recs: dict[int, _Rec] = {}
        self._open: dict[int, _Rec] = {}  # position -> incomplete touched record
        self._avail: list[int] = []       # sorted positions
        self._full: list[int] = []        # sorted positions
        self._holds: dict[str, set[int]] = {}
        self._hard: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._deadlines: list[tuple[float, str]] = []  # (last + ttl, user), may be early: re-checked
        self._queued: set[str] = set()
        self._seen_open: dict[str, int] = {}  # user -> seen records not complete (remaining_for in O(1))
        self._n_complete = 0
        self._n_partial = 0
        self._n_leased = 0
        self._n_submissions = 0
        self._n_skips = 0
        self._clock = float("-inf")
        self._plan = plan
        self._quotas: dict[str, int | None] = {}  # per-person overrides of plan.quota (None: no limit)
        self._gold: dict[int, _Rec] = {rid: _Rec(rid, -1, gold=True) for rid in gold}
        # (user, gold record) leases granted since the caller last took them (take_handouts), for it to store;
        # each pair comes once, so this holds at most users x gold records even if nobody takes them
        self._handouts: list[tuple[str, int]] = []
        self._recs.update(self._gold)
        self._mine: dict[str, int] = {}    # user -> submitted answers to records in the order (the quota's count)
        self._dealt: dict[str, int] = {}   # user -> records in the order they submitted or skipped
        self._gold_n: dict[str, int] = {}  # user -> gold records they submitted or skipped

    @property
    def overlap(self) -> int:
        return self._overlap

    @property
    def lease_ttl(self) -> float:
        return self._ttl

    # --- records -----------------------------------------------------------

    def add_records(self, ids: Sequence[int]) -> int:
        """Append records to the hand-out order; ids already known are ignored. Returns how many were added.

        The duplicate check runs outside the lock against a snapshot (segments
        never change once added), so a large import does not stall clicks.
        """
        with self._lock:
            for seg in self._segs:
                seg.prepare()
            known = list(self._segs)
        fresh = self._filter_new(ids, known)
        with self._lock:
            later = self._segs[len(known):]
            if later:
                fresh = self._filter_new(fresh, later)
            if not len(fresh):
                return 0
            self._segs.append(_Segment(self._n, fresh))
            self._n += len(fresh)
            return len(fresh)

    @staticmethod
    def _filter_new(ids: Sequence[int], segs: list[_Segment]) -> Sequence[int]:
        if isinstance(ids, range) and ids.step > 0:
            hit = any(s.index(r) >= 0 for s in segs for r in ids) if segs else False
            if not hit:
                return ids
        out = array("q")
        seen: set[int] = set()
        for rid in ids:
            rid = operator.index(rid)
            if rid in seen or any(s.index(rid) >= 0 for s in segs):
                continue
            seen.add(rid)
            out.append(rid)
        return out

    def restore(self, facts: Iterable[tuple[int, str, str]], extra: Mapping[int, int] | None = None,
                handed: Iterable[tuple[str, int]] = ()) -> int:
        """Rebuild from stored answers at start-up: (record_id, user, "submitted"|"skipped"), reopen targets,
        and the gold hand-outs stored from `take_handouts` ((user, gold record id): never handed to them again).

        Later facts for the same (record, user) win. Facts and extras for ids
        not in the order, and hand-outs of records that are no gold records
        now, are ignored (records removed since), and counted in the return
        value, so that start-up never fails on stale data. An unknown status
        raises ValueError before anything changes.
        """
        facts = facts if isinstance(facts, (list, tuple)) else list(facts)
        extra = dict(extra or {})
        bad = next((f for f in facts if f[2] != "submitted" and f[2] != "skipped"), None)
        if bad is not None:
            raise ValueError(f"unknown status {bad[2]!r} for record {bad[0]}")
        with self._lock:
            recs = self._recs
            need = {f[0] for f in facts if f[0] not in recs}
            need.update(rid for rid in extra if rid not in recs)
            for rid, pos in self._locate_many(need).items():
                recs[rid] = _Rec(rid, pos)
            ignored = 0
            n_sub = n_skip = 0
            for rid, user, status in facts:
                rec = recs.get(rid)
                if rec is None:
                    ignored += 1
                    continue
                submitted, skipped = rec.submitted, rec.skipped
                counted = not rec.gold
                if status == "submitted":
                    if skipped and user in skipped:
                        skipped.discard(user)
                        n_skip -= counted
                    if user not in submitted:
                        submitted.add(user)
                        n_sub += counted
                else:
                    if user in submitted:
                        submitted.discard(user)
                        n_sub -= counted
                    if skipped is None:
                        skipped = rec.skipped = set()
                    if user not in skipped:
                        skipped.add(user)
                        n_skip += counted
                if rec.holders and user in rec.holders:
                    self._unlease(user, rec)
            self._n_submissions += n_sub
            self._n_skips += n_skip
            for rid, n in extra.items():
                rec = recs.get(rid)
                if rec is None:
                    ignored += 1
                    continue
                rec.extra = max(0, int(n))
            for user, rid in handed:
                rec = self._gold.get(rid)
                if rec is None:
                    ignored += 1
                    continue
                rec.handed.add(user)  # type: ignore[union-attr]
            self._rebuild()
            return ignored

    def reopen(self, rid: int, extra: int = 1) -> None:
        """Ask for `extra` more answers on one record (target = overlap + all extras so far)."""
        if extra < 1:
            raise ValueError("extra must be at least 1")
        with self._lock:
            rec = self._get(rid)
            rec.extra += extra
            self._refresh(rec)

    def set_quota(self, user: str, quota: int | None) -> None:
        """An admin's override of the task's quota for one person (None: no limit); leases held stay."""
        with self._lock:
            self._quotas[user] = quota

    def take_handouts(self) -> list[tuple[str, int]]:
        """The gold leases granted since the last call, as (user, record id), each once: what the caller
        stores for `restore` to keep every gold record at most once per person across a restart."""
        if not self._handouts:  # the click path's usual case: no lock taken
            return []
        with self._lock:
            out, self._handouts = self._handouts, []
            return out

    # --- users and leases --------------------------------------------------

    def touch(self, user: str, now: float | None = None) -> None:
        """Record activity: keeps the user's leases alive for another `lease_ttl`."""
        with self._lock:
            self._begin(user, now)

    def next(self, user: str, now: float | None = None) -> QueueState:
        """The record for the user's screen: the one they hold, else a new hard lease (open, fresh, own soft, takeover)."""
        with self._lock:
            self._begin(user, now)
            rid = self._hard.get(user)
            if rid is not None:
                return QueueState("ready", rid)
            gold = self._gold_pick(user)
            if gold is not None:
                self._grant(user, gold, "hard")
                return QueueState("ready", gold.rid)
            source, target = self._pick(user)
            if source == "avail":
                self._grant(user, target, "hard")
            elif source == "fresh":
                target = self._take_fresh()
                self._grant(user, target, "hard")
            elif source == "own":
                self._hard[user] = target.rid
            elif source == "takeover":
                victim = min((h for h in target.holders if self._hard.get(h) != target.rid),
                             key=lambda h: (self._last[h], h))
                self._unlease(victim, target)
                self._grant(user, target, "hard")
            else:
                return self._waiting_or_done(user)
            return QueueState("ready", target.rid)

    def state(self, user: str, now: float | None = None) -> QueueState:
        """What `next` would answer, without granting anything (ready names the record `next` would give)."""
        with self._lock:
            self._begin(user, now)
            rid = self._hard.get(user)
            if rid is not None:
                return QueueState("ready", rid)
            gold = self._gold_pick(user)
            if gold is not None:
                return QueueState("ready", gold.rid)
            source, target = self._pick(user)
            if source is None:
                return self._waiting_or_done(user)
            if source == "fresh":
                return QueueState("ready", self._peek_fresh()[0])  # type: ignore[index]
            return QueueState("ready", target.rid)

    def lease_soft(self, user: str, n: int, now: float | None = None) -> list[int]:
        """Up to n new soft leases for the user's prefetch buffer, in priority order; never a takeover."""
        with self._lock:
            self._begin(user, now)
            out: list[int] = []
            avail = iter(list(self._avail))  # positions only move on to _full or out as leases are granted
            while len(out) < n:
                rec = self._gold_pick(user)
                if rec is None and self._room(user) > 0:
                    rec = next((r for r in map(self._open.get, avail)
                                if r is not None and r.where == _AVAIL and self._eligible(user, r)), None)
                    if rec is None and self._peek_fresh() is not None:
                        rec = self._take_fresh()
                if rec is None:
                    break
                self._grant(user, rec, "soft")
                out.append(rec.rid)
            return out

    def promote(self, user: str, rid: int, now: float | None = None) -> bool:
        """Soft -> hard (the record goes on screen). False if the lease was lost (expired, taken over, released).

        A different hard lease the user held is demoted to soft, not dropped:
        the caller answers or skips what was on screen before promoting.
        """
        with self._lock:
            self._begin(user, now)
            held = self._holds.get(user)
            if not held or rid not in held:
                return False
            self._hard[user] = rid
            return True

    def current(self, user: str) -> int | None:
        """The user's hard-leased record (on screen), if any."""
        with self._lock:
            return self._hard.get(user)

    def holds(self, user: str, rid: int, now: float | None = None) -> bool:
        """Whether the user holds an active lease on the record. A query: not counted as activity."""
        with self._lock:
            self._sweep(self._now(now))
            held = self._holds.get(user)
            return bool(held) and rid in held  # type: ignore[operator]

    def release(self, user: str, rid: int | None = None) -> int:
        """End the user's leases (session ended), or one of them. Returns how many were dropped."""
        with self._lock:
            held = self._holds.get(user)
            if not held:
                return 0
            rids = list(held) if rid is None else ([rid] if rid in held else [])
            for r in rids:
                rec = self._recs[r]
                self._unlease(user, rec)
                self._refresh(rec)
            return len(rids)

    def expire(self, now: float | None = None) -> int:
        """Drop every expired lease now (the lazy sweep does this anyway); returns how many."""
        with self._lock:
            return self._sweep(self._now(now))

    # --- answers -----------------------------------------------------------

    def submit(self, user: str, rid: int, now: float | None = None) -> SubmitOutcome:
        """Count a submission. KeyError if `rid` is not a record.

        "new": answered under a lease; "edit": the user had already submitted
        or skipped it (a skip becomes a submission); "late": no active lease,
        counted anyway, possibly as an extra answer beyond the target.
        QuotaFull (nothing counted) when an answer without the user's lease
        would add to their submitted answers while those plus the records
        they hold already reach their quota (gold.QuotaFull).
        """
        return self._answer(user, rid, "submitted", now)

    def skip(self, user: str, rid: int, now: float | None = None) -> SubmitOutcome:
        """Mark the record seen without counting it; a previous submission by the user becomes a skip ("edit")."""
        return self._answer(user, rid, "skipped", now)

    def _answer(self, user: str, rid: int, status: str, now: float | None) -> SubmitOutcome:
        with self._lock:
            self._begin(user, now)
            created = rid not in self._recs
            rec = self._get(rid)
            had = bool(rec.holders) and user in rec.holders  # type: ignore[operator]
            if status == "submitted" and not had and not rec.gold and user not in rec.submitted \
                    and self._room(user) < 1:
                if created:  # refused before anyone touched it: it stays fresh, to be handed out (I3)
                    del self._recs[rid]
                raise QuotaFull()
            if had:
                self._unlease(user, rec)
            before = self._set_answer(user, rec, status)
            self._refresh(rec)
            if before is not None:
                return "edit"
            return "new" if had else "late"

    def correct(self, user: str, rid: int, status: str | None) -> None:
        """Set what the user's answer to `rid` counts as: "submitted", "skipped" or None (no answer).

        For an answer counted by `submit`/`skip` whose write was then refused
        for good: the store keeps `status` (the last answer that committed),
        and so must the counts. With None the record is open to the user again
        (I1 holds: it is not one they answered). Unknown records are ignored.
        """
        if status not in ("submitted", "skipped", None):
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            rec = self._recs.get(rid)
            if rec is None:
                return
            self._set_answer(user, rec, status)
            self._refresh(rec)

    def _set_answer(self, user: str, rec: _Rec, status: str | None) -> str | None:
        """Make the user's answer to `rec` count as `status`, with every counter; returns what it was."""
        before = "submitted" if user in rec.submitted else \
            "skipped" if rec.skipped and user in rec.skipped else None
        if before == status:
            return before
        counted = not rec.gold
        if before == "submitted":
            rec.submitted.discard(user)
        elif before == "skipped":
            rec.skipped.discard(user)  # type: ignore[union-attr]
        if status == "submitted":
            rec.submitted.add(user)
        elif status == "skipped":
            if rec.skipped is None:
                rec.skipped = set()
            rec.skipped.add(user)
        d_sub = (status == "submitted") - (before == "submitted")
        d_seen = (status is not None) - (before is not None)
        if counted:
            self._n_submissions += d_sub
            self._n_skips += (status == "skipped") - (before == "skipped")
            self._mine[user] = self._mine.get(user, 0) + d_sub
            self._dealt[user] = self._dealt.get(user, 0) + d_seen
            if not rec.complete and d_seen:
                self._seen_open[user] = self._seen_open.get(user, 0) + d_seen
        elif d_seen:
            self._gold_n[user] = self._gold_n.get(user, 0) + d_seen
        return before

    def answered(self, user: str, rid: int) -> str | None:
        """"submitted", "skipped" or None: how the user's answer to `rid` counts now."""
        with self._lock:
            rec = self._recs.get(rid)
            if rec is None:
                return None
            if user in rec.submitted:
                return "submitted"
            return "skipped" if rec.skipped and user in rec.skipped else None

    # --- views -------------------------------------------------------------

    def submitted_users(self, rid: int) -> frozenset[str]:
        with self._lock:
            rec = self._recs.get(rid)
            if rec is None:
                self._locate(rid)  # KeyError if unknown
                return frozenset()
            return frozenset(rec.submitted)

    def has_seen(self, user: str, rid: int) -> bool:
        with self._lock:
            rec = self._recs.get(rid)
            return rec is not None and (user in rec.submitted or bool(rec.skipped) and user in rec.skipped)  # type: ignore[operator]

    def counts(self) -> dict[str, int]:
        """Team progress. `leased` is as of the latest time any call carried."""
        with self._lock:
            return {
                "records": self._n,
                "complete": self._n_complete,
                "partial": self._n_partial,
                "untouched": self._n - self._n_complete - self._n_partial,
                "leased": self._n_leased,
                "submissions": self._n_submissions,
                "skips": self._n_skips,
            }

    def leases(self, now: float | None = None) -> dict[str, list[tuple[int, str]]]:
        """Active leases by user, in order position: [(record_id, "soft"|"hard")]."""
        with self._lock:
            self._sweep(self._now(now))
            out: dict[str, list[tuple[int, str]]] = {}
            for user, held in self._holds.items():
                if held:
                    hard = self._hard.get(user)
                    recs = sorted((self._recs[r] for r in held), key=lambda r: r.pos)
                    out[user] = [(r.rid, "hard" if r.rid == hard else "soft") for r in recs]
            return out

    def remaining_for(self, user: str) -> int:
        """Records neither complete nor seen by this user, in O(1)."""
        with self._lock:
            return self._n - self._n_complete - self._seen_open.get(user, 0)

    # --- internals (not meant to be used directly; callers hold the lock) ---

    def _now(self, now: float | None) -> float:
        now = time.time() if now is None else float(now)
        if now > self._clock:
            self._clock = now
        return now

    def _begin(self, user: str, now: float | None) -> float:
        # Sweep before touching: a user who comes back after the ttl has lost their leases.
        now = self._now(now)
        self._sweep(now)
        if now > self._last.get(user, float("-inf")):
            self._last[user] = now
        return now

    def _sweep(self, now: float) -> int:
        dropped = 0
        heap = self._deadlines
        while heap and heap[0][0] < now:
            _, user = heapq.heappop(heap)
            self._queued.discard(user)
            held = self._holds.get(user)
            if not held:
                continue
            deadline = self._last[user] + self._ttl
            if deadline < now:
                for rid in list(held):
                    rec = self._recs[rid]
                    self._unlease(user, rec)
                    self._refresh(rec)
                    dropped += 1
            else:
                heapq.heappush(heap, (deadline, user))
                self._queued.add(user)
        return dropped

    def _locate(self, rid: int) -> int:
        rid = operator.index(rid)
        for seg in self._segs:
            i = seg.index(rid)
            if i >= 0:
                return seg.start + i
        raise KeyError(rid)

    def _locate_many(self, rids: set[int]) -> dict[int, int]:
        """Positions of many ids at once (restore); unknown ids are left out.

        When the ids cover a good part of a list segment, one temporary dict
        over the segment beats a bisect per id by about 10x.
        """
        found: dict[int, int] = {}
        left = set(rids)
        for seg in self._segs:
            if not left:
                break
            ids, start = seg.ids, seg.start
            if isinstance(ids, range) or len(left) * 8 < len(ids):
                for rid in list(left):
                    i = seg.index(operator.index(rid))
                    if i >= 0:
                        found[rid] = start + i
                        left.discard(rid)
            else:
                where = dict(zip(ids, range(start, start + len(ids))))
                for rid in list(left):
                    pos = where.get(rid)
                    if pos is not None:
                        found[rid] = pos
                        left.discard(rid)
                del where
        return found

    def _create(self, rid: int) -> _Rec:
        rec = _Rec(rid, self._locate(rid))
        self._recs[rid] = rec
        return rec

    def _get(self, rid: int) -> _Rec:
        rec = self._recs.get(rid)
        return rec if rec is not None else self._create(rid)

    def _peek_fresh(self) -> tuple[int, int] | None:
        """(record id, position) of the first untouched record in order, or None."""
        while self._fresh < self._n:
            seg = self._segs[self._fresh_seg]
            local = self._fresh - seg.start
            if local >= len(seg):
                self._fresh_seg += 1
                continue
            rid = seg.ids[local]
            if rid in self._recs:
                self._fresh += 1
                continue
            return rid, self._fresh
        return None

    def _take_fresh(self) -> _Rec:
        found = self._peek_fresh()
        assert found is not None
        rid, pos = found
        rec = _Rec(rid, pos)
        self._recs[rid] = rec
        self._fresh += 1
        return rec

    @staticmethod
    def _eligible(user: str, rec: _Rec) -> bool:
        return not (user in rec.submitted or (rec.skipped and user in rec.skipped)
                    or (rec.holders and user in rec.holders))

    def _pick(self, user: str) -> tuple[str | None, _Rec | None]:
        """The source and record of the next hard lease, in priority order; (None, None) if none.
        At the quota only a record the user holds already."""
        room = self._room(user) > 0
        if room:
            for pos in self._avail:
                rec = self._open[pos]
                if self._eligible(user, rec):
                    return "avail", rec
            if self._peek_fresh() is not None:
                return "fresh", None
        held = self._holds.get(user)
        if held:
            return "own", min((self._recs[r] for r in held), key=lambda r: r.pos)
        if not room:
            return None, None
        hard = self._hard
        for pos in self._full:
            rec = self._open[pos]
            if self._eligible(user, rec) and any(hard.get(h) != rec.rid for h in rec.holders):  # type: ignore[union-attr]
                return "takeover", rec
        return None, None

    def _waiting_or_done(self, user: str) -> QueueState:
        # Only fully held records can be left here: anything available or fresh would have been picked.
        if self._room(user) <= 0:
            return QueueState("quota")
        count = 0
        frees_at: float | None = None
        for pos in self._full:
            rec = self._open[pos]
            if not self._eligible(user, rec):
                continue
            count += 1
            t = min(self._last[h] for h in rec.holders) + self._ttl  # type: ignore[union-attr]
            if frees_at is None or t < frees_at:
                frees_at = t
        if count:
            return QueueState("waiting", None, count, frees_at)
        return QueueState("done")

    def _room(self, user: str) -> float:
        """How many more records in the order the user may lease: quota - submitted - held (inf: no quota)."""
        quota = self._quotas[user] if user in self._quotas else self._plan.quota
        if quota is None:
            return float("inf")
        held = sum(1 for r in self._holds.get(user, ()) if not self._recs[r].gold)
        return quota - self._mine.get(user, 0) - held

    def _gold_pick(self, user: str) -> _Rec | None:
        """The gold record due for the user now (gold.gold_due), first never handed to them in their order;
        None if none is.

        A gold lease that ended unanswered counts in neither `gold` nor `total` (like any lapsed lease), so
        when gold was due it stays due and a different gold record comes next."""
        if not self._gold or self._room(user) <= 0:
            return None
        held = self._holds.get(user, ())
        gold_held = sum(1 for r in held if self._recs[r].gold)
        gold = self._gold_n.get(user, 0) + gold_held
        total = self._dealt.get(user, 0) + len(held) + self._gold_n.get(user, 0)
        if not gold_due(self._plan, user, gold, total):
            return None
        unmet = [rec for rec in self._gold.values()
                 if user not in rec.handed and self._eligible(user, rec)]  # type: ignore[operator]
        return min(unmet, key=lambda rec: gold_rank(user, rec.rid)) if unmet else None

    def _grant(self, user: str, rec: _Rec, kind: LeaseKind) -> None:
        if rec.holders is None:
            rec.holders = set()
        if not rec.holders and not rec.gold:
            self._n_leased += 1
        rec.holders.add(user)
        if rec.handed is not None:
            rec.handed.add(user)
            self._handouts.append((user, rec.rid))
        held = self._holds.get(user)
        if held is None:
            held = self._holds[user] = set()
        held.add(rec.rid)
        if kind == "hard":
            self._hard[user] = rec.rid
        if user not in self._queued:
            heapq.heappush(self._deadlines, (self._last[user] + self._ttl, user))
            self._queued.add(user)
        self._refresh(rec)

    def _unlease(self, user: str, rec: _Rec) -> None:
        """Drop one lease; the caller refreshes the record afterwards."""
        holders = rec.holders
        if not holders or user not in holders:
            return
        holders.discard(user)
        if not holders and not rec.gold:
            self._n_leased -= 1
        self._holds[user].discard(rec.rid)
        if self._hard.get(user) == rec.rid:
            del self._hard[user]

    def _place(self, rec: _Rec, where: int) -> None:
        if rec.where == where:
            return
        if rec.where:
            lst = self._avail if rec.where == _AVAIL else self._full
            del lst[bisect_left(lst, rec.pos)]
            if not where:
                del self._open[rec.pos]
        if where:
            insort(self._avail if where == _AVAIL else self._full, rec.pos)
            self._open[rec.pos] = rec
        rec.where = where

    def _refresh(self, rec: _Rec) -> None:
        """Bring counters and lists in line with the record's answers, leases and target."""
        if rec.gold:
            return
        target = self._overlap + rec.extra
        ns = len(rec.submitted)
        status = record_status(ns, target)  # skips are no answers: an only-skipped record counts as untouched
        complete = status == "complete"
        if complete != rec.complete:
            rec.complete = complete
            d = -1 if complete else 1
            self._n_complete -= d
            seen_open = self._seen_open
            for u in rec.submitted:
                seen_open[u] = seen_open.get(u, 0) + d
            if rec.skipped:
                for u in rec.skipped:
                    seen_open[u] = seen_open.get(u, 0) + d
            if complete and rec.holders:
                # Nobody has seen a soft lease yet: free the buffers. Hard leases stay (work on screen).
                for u in [h for h in rec.holders if self._hard.get(h) != rec.rid]:
                    self._unlease(u, rec)
        partial = status == "partial"
        if partial != rec.partial:
            rec.partial = partial
            self._n_partial += 1 if partial else -1
        if complete:
            self._place(rec, 0)
        else:
            self._place(rec, _AVAIL if ns + len(rec.holders or ()) < target else _FULL)

    def _rebuild(self) -> None:
        """Recompute every derived structure from the records (after a bulk restore)."""
        self._n_complete = self._n_partial = 0
        self._seen_open = seen_open = {}
        self._open = {}
        self._avail = []
        self._full = []
        self._mine, self._dealt, self._gold_n = {}, {}, {}
        for rec in self._recs.values():
            for u in rec.submitted:
                if not rec.gold:
                    self._mine[u] = self._mine.get(u, 0) + 1
            seen = self._gold_n if rec.gold else self._dealt
            for u in (*rec.submitted, *(rec.skipped or ())):
                seen[u] = seen.get(u, 0) + 1
            if rec.gold:
                continue
            target = self._overlap + rec.extra
            ns = len(rec.submitted)
            status = record_status(ns, target)
            rec.complete = status == "complete"
            rec.partial = status == "partial"
            self._n_partial += rec.partial
            if rec.complete:
                self._n_complete += 1
                rec.where = 0
                if rec.holders:
                    for u in [h for h in rec.holders if self._hard.get(h) != rec.rid]:
                        self._unlease(u, rec)
                continue
            for u in rec.submitted:
                seen_open[u] = seen_open.get(u, 0) + 1
            if rec.skipped:
                for u in rec.skipped:
                    seen_open[u] = seen_open.get(u, 0) + 1
            rec.where = _AVAIL if ns + len(rec.holders or ()) < target else _FULL
            (self._avail if rec.where == _AVAIL else self._full).append(rec.pos)
            self._open[rec.pos] = rec
        self._avail.sort()
        self._full.sort()
