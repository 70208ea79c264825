"""Assignment in PostgreSQL: leases as rows, so that every replica sees the same truth.

The SQL half of the PostgreSQL backend (`pg_backend.py` composes it). The
contract is the scheduler's (I1-I5 in DESIGN.md); what makes it hold across
processes:

- A record row is locked (`FOR UPDATE ... SKIP LOCKED`) by whoever leases it,
  and the overlap check reads counters on that same row (`submitted`,
  `leased`), which every lease and every answer update in the same
  transaction. PostgreSQL re-checks a locked row's condition against its
  newest version, so two replicas can never both take the last slot (I2).
- A lease expires `ttl` seconds after its holder's last activity: `touch`
  moves every lease of that person forward, and whoever runs next deletes
  expired rows (I4). A replica that dies leaves its leases to expire.
- Takeover (I5) deletes a soft (buffered, unseen) lease of another person;
  hard leases (on screen, or answered but not yet committed) are never taken.
- Gold records (issue 17) are rows marked `gold`: outside every count and
  the regular hand-out, leased like any record but with no overlap. Each
  gold lease granted is also kept in `gold_handouts`, which outlives the
  lease row, so a person is handed each gold record at most once, even when
  that lease expired or was released unanswered, on any replica. Whether
  the next hand-out is gold, and a quota, are decided from the person's rows
  under a per-person advisory lock, so two replicas serving the same person
  decide one after the other.
- "done" is answered only after a plain read (no SKIP LOCKED) finds nothing
  left for the person; a record skipped only because another transaction had
  it locked makes the caller try again (I3).

Time is passed in (seconds since the epoch, stored as naive UTC), like the
in-memory scheduler, so tests can move it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from annotator.gold import GoldPlan, gold_due, gold_rank
from annotator.model import QueueState, record_status

T = TypeVar("T")

# conflicts between replicas that a retry of the whole transaction resolves
_RETRY = (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation, errors.LockNotAvailable)
_ATTEMPTS = 8

# eligible for this person: not answered by them, not already theirs
_ELIGIBLE = """
    NOT EXISTS (SELECT 1 FROM responses x WHERE x.record_id = r.id AND x.user_id = %(u)s)
    AND NOT EXISTS (SELECT 1 FROM leases m WHERE m.record_id = r.id AND m.user_id = %(u)s)
"""
# a gold record for this person: eligible, and never leased to them before (a lapsed lease included)
_GOLD_UNMET = f"""r.gold AND {_ELIGIBLE}
    AND NOT EXISTS (SELECT 1 FROM gold_handouts h WHERE h.user_id = %(u)s AND h.record_id = r.id)
"""
# not complete (model.record_status) in SQL: hand-outs filter on it, and migration 3's partial indexes match it
_INCOMPLETE = "r.submitted < r.overlap + r.extra_answers"
# a lease worth keeping on screen: a gold record never completes
_LIVE = f"(r.gold OR {_INCOMPLETE})"
# pg_advisory_xact_lock(class, key) classes: 7410001 the order (set_order), this one a person's hand-outs
_PERSON_LOCK = 7410002
# How long a replica uses the admins' quota overrides it read (all of them, one small read) before reading them
# again: a hand-out costs no extra round trip, and an override set on another replica applies here within this
# many seconds (on the replica that set it, at once).
QUOTA_OVERRIDES_MAX_AGE = 5.0
_ONE = "user_id = %(u)s AND record_id = %(rid)s"
_ALL = "user_id = %(u)s"


@dataclass
class _Dealt:
    """One person's rows as gold and the quota count them: gold records answered or held, every record
    answered or held, and how many more records of the order they may hold (inf: no quota)."""
    gold: int
    total: int
    room: float


def to_ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def from_ts(ts: datetime) -> float:
    return ts.replace(tzinfo=timezone.utc).timestamp()


class PgLeases:
    """Lease rows and the queries over them. Thread-safe: every call takes a pooled connection."""

    def __init__(self, pool: ConnectionPool, overlap: int, ttl: float, replica: str, *,
                 plan: GoldPlan = GoldPlan()) -> None:
        self._pool = pool
        self.overlap = overlap
        self.ttl = ttl
        self.replica = replica
        self.plan = plan
        self._gold = False  # any gold records (set_order)
        self._overrides: tuple[float, dict[str, int | None]] | None = None  # (read at, user -> quota)

    # --- plumbing ------------------------------------------------------------

    def _run(self, work: Callable[[psycopg.Cursor], T]) -> T:
        """One transaction; conflicts with other replicas are retried from the start."""
        for attempt in range(_ATTEMPTS):
            try:
                with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    # leases are soon-expiring state: a crash of the server may lose the last few ms of
                    # them, never an answer (the writer's transactions keep synchronous commit)
                    cur.execute("SET LOCAL synchronous_commit = off")
                    return work(cur)
            except _RETRY:
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")

    def _params(self, user: str | None, now: float, **more: Any) -> dict[str, Any]:
        return {"u": user, "now": to_ts(now), "exp": to_ts(now + self.ttl),
                "replica": self.replica, **more}

    # --- the hand-out order --------------------------------------------------

    def set_order(self, ids: Sequence[int], gold: Sequence[int] = ()) -> None:
        """Store the hand-out rank of every record (dataset order or the seeded shuffle) and the overlap.

        Every replica computes the same order from the same task; an advisory
        lock keeps replicas starting together from writing it at once. The
        overlap sits on each row (and is the column's default for records
        added later) so that the open records have a partial index. `gold`:
        the gold records' ids (not in `ids`).
        """
        def work(cur: psycopg.Cursor) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(7410001)")
            cur.execute("SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
                        "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
                        "WHERE d.adrelid = 'records'::regclass AND a.attname = 'overlap'")
            if cur.fetchone()[0] != str(int(self.overlap)):
                # ALTER TABLE locks the table out: only when the task's overlap changed, not at every start
                # (replicas already serving would wait behind it)
                cur.execute(f"ALTER TABLE records ALTER COLUMN overlap SET DEFAULT {int(self.overlap)}")
            cur.execute("UPDATE records r SET rank = v.rank, overlap = %s FROM unnest(%s::int[], %s::int[]) "
                        "AS v(id, rank) WHERE r.id = v.id AND (r.rank, r.overlap) IS DISTINCT FROM (v.rank, %s)",
                        [self.overlap, list(ids), list(range(len(ids))), self.overlap])
            cur.execute("UPDATE records SET gold = (id = ANY(%(g)s)) WHERE gold IS DISTINCT FROM (id = ANY(%(g)s))",
                        {"g": list(gold)})
        self._run(work)
        self._gold = bool(gold)

    def set_quota(self, user: str, quota: int | None) -> None:
        """An admin's override of the task's quota for one person (None: no limit), for every replica: here
        from the next hand-out, elsewhere within QUOTA_OVERRIDES_MAX_AGE seconds."""
        def work(cur: psycopg.Cursor) -> None:
            cur.execute("INSERT INTO quotas (user_id, quota) VALUES (%s, %s) "
                        "ON CONFLICT (user_id) DO UPDATE SET quota = excluded.quota", [user, quota])
        self._run(work)
        self._overrides = None

    def _quota(self, cur: psycopg.Cursor, user: str, now: float) -> int | None:
        """The person's quota: an admin's override, else the task's. The overrides are read all at once, at
        most every QUOTA_OVERRIDES_MAX_AGE seconds (a small table: one row per override)."""
        cached = self._overrides
        if cached is None or not 0 <= now - cached[0] < QUOTA_OVERRIDES_MAX_AGE:
            cur.execute("SELECT user_id, quota FROM quotas")
            cached = self._overrides = (now, {u: q for u, q in cur.fetchall()})
        overrides = cached[1]
        return overrides[user] if user in overrides else self.plan.quota

    # --- leases ----------------------------------------------------------------

    @staticmethod
    def _sweep(cur: psycopg.Cursor, p: dict[str, Any]) -> int:
        cur.execute("""
            WITH dead AS (
                SELECT record_id, user_id FROM leases WHERE expires_at < %(now)s FOR UPDATE SKIP LOCKED
            ), gone AS (
                DELETE FROM leases l USING dead d WHERE l.record_id = d.record_id AND l.user_id = d.user_id
                RETURNING l.record_id
            ), counted AS (
                SELECT record_id, count(*) AS n FROM gone GROUP BY record_id
            ), fixed AS (
                UPDATE records r SET leased = r.leased - c.n FROM counted c WHERE r.id = c.record_id RETURNING c.n
            )
            SELECT coalesce(sum(n), 0) FROM fixed""", p)
        return int(cur.fetchone()[0])

    def expire(self, now: float) -> int:
        """Delete every lease whose holder has been idle longer than the ttl; how many."""
        return self._run(lambda cur: self._sweep(cur, self._params(None, now)))

    def touch(self, user: str, now: float) -> list[tuple[int, bool]]:
        """Activity: the person's live leases last another ttl. Returns them as (record, hard)."""
        p = self._params(user, now)

        def work(cur: psycopg.Cursor) -> list[tuple[int, bool]]:
            cur.execute("UPDATE leases SET expires_at = %(exp)s WHERE user_id = %(u)s AND expires_at >= %(now)s "
                        "RETURNING record_id, hard", p)
            return [(int(r), bool(h)) for r, h in cur.fetchall()]
        return self._run(work)

    @staticmethod
    def _grant(cur: psycopg.Cursor, p: dict[str, Any]) -> list[int]:
        """Up to n new leases for the person, open records first, then the hand-out order."""
        cur.execute(f"""
            WITH picked AS (
                SELECT r.id, r.touched, r.rank FROM records r
                WHERE r.submitted + r.leased < r.overlap + r.extra_answers AND NOT r.gold AND {_ELIGIBLE}
                ORDER BY r.touched DESC, r.rank, r.id
                LIMIT %(n)s
                FOR UPDATE OF r SKIP LOCKED
            ), bumped AS (
                UPDATE records r SET leased = r.leased + 1, touched = true FROM picked WHERE r.id = picked.id
                RETURNING r.id
            ), added AS (
                INSERT INTO leases (record_id, user_id, hard, replica, expires_at)
                SELECT id, %(u)s, %(hard)s, %(replica)s, %(exp)s FROM bumped
                RETURNING record_id
            )
            SELECT p.id FROM picked p JOIN added a ON a.record_id = p.id ORDER BY p.touched DESC, p.rank, p.id""", p)
        return [int(r) for (r,) in cur.fetchall()]

    def _begin(self, cur: psycopg.Cursor, p: dict[str, Any]) -> "_Dealt | None":
        """Start a hand-out: the person's advisory lock (first, before any row lock: no lock cycles) when gold
        or a quota applies, the sweep, then what gold and the quota need of the person (None: neither)."""
        quota = self._quota(cur, p["u"], from_ts(p["now"]))
        if quota is not None or self._gold:
            cur.execute(f"SELECT pg_advisory_xact_lock({_PERSON_LOCK}, hashtext(%(u)s))", p)
        self._sweep(cur, p)
        if quota is None and not self._gold:
            return None
        cur.execute("""
            SELECT count(*) FILTER (WHERE r.gold), count(*), count(*) FILTER (WHERE NOT r.gold AND x.counts)
            FROM (SELECT record_id, status = 'submitted' AS counts FROM responses WHERE user_id = %(u)s
                  UNION ALL
                  SELECT l.record_id, true FROM leases l WHERE l.user_id = %(u)s AND l.expires_at >= %(now)s
                    AND NOT EXISTS (SELECT 1 FROM responses y WHERE y.record_id = l.record_id
                                    AND y.user_id = %(u)s AND y.status = 'submitted')) x
            JOIN records r ON r.id = x.record_id""", p)
        gold, total, counted = cur.fetchone()
        room = float("inf") if quota is None else quota - counted
        return _Dealt(int(gold), int(total), room)

    def _gold_lease(self, cur: psycopg.Cursor, p: dict[str, Any], dealt: "_Dealt | None") -> int | None:
        """A gold lease when one is due for the person (gold.gold_due) and one never handed to them is left.

        A gold lease that ended unanswered counts in neither of `_begin`'s gold counts (its row is gone), so
        when gold was due it stays due and a different gold record comes next."""
        if dealt is None or not self._gold or dealt.room <= 0 or \
                not gold_due(self.plan, p["u"], dealt.gold, dealt.total):
            return None
        cur.execute(f"SELECT r.id FROM records r WHERE {_GOLD_UNMET}", p)
        unmet = [int(r) for (r,) in cur.fetchall()]
        if not unmet:
            return None
        rid = min(unmet, key=lambda r: gold_rank(p["u"], r))
        cur.execute("INSERT INTO leases (record_id, user_id, hard, replica, expires_at) "
                    "VALUES (%(rid)s, %(u)s, %(hard)s, %(replica)s, %(exp)s)", {**p, "rid": rid})
        cur.execute("INSERT INTO gold_handouts (user_id, record_id) VALUES (%(u)s, %(rid)s) ON CONFLICT DO NOTHING",
                    {**p, "rid": rid})
        cur.execute("UPDATE records SET leased = leased + 1 WHERE id = %s", [rid])
        dealt.gold += 1
        dealt.total += 1
        return rid

    def claim(self, user: str, record_id: int, now: float) -> bool:
        """Room in the person's quota for an answer they give without holding the record (a late answer, a
        skip turned into an answer); False when their quota is full (gold.QuotaFull).

        Taken room is a hard lease row on the record, counted like any held record until the answer's
        commit deletes it (or a refusal of the write releases it), so answers arriving together on several
        replicas are counted one after the other under the person's lock. No quota, a gold record, a
        record they hold or already submitted: True, with nothing written.
        """
        p = self._params(user, now, rid=record_id)

        def work(cur: psycopg.Cursor) -> bool:
            dealt = self._begin(cur, p)
            if dealt is None or dealt.room == float("inf"):
                return True
            cur.execute("""
                SELECT r.gold
                    OR EXISTS (SELECT 1 FROM leases l WHERE l.record_id = r.id AND l.user_id = %(u)s
                               AND l.expires_at >= %(now)s)
                    OR EXISTS (SELECT 1 FROM responses x WHERE x.record_id = r.id AND x.user_id = %(u)s
                               AND x.status = 'submitted')
                FROM records r WHERE r.id = %(rid)s""", p)
            row = cur.fetchone()
            if row is None or row[0]:
                return True  # an unknown record is the writer's to refuse
            if dealt.room <= 0:
                return False
            cur.execute("""
                INSERT INTO leases (record_id, user_id, hard, replica, expires_at)
                VALUES (%(rid)s, %(u)s, true, %(replica)s, %(exp)s)
                ON CONFLICT (record_id, user_id) DO UPDATE SET hard = true, expires_at = excluded.expires_at
                RETURNING xmax = 0""", p)
            if cur.fetchone()[0]:
                cur.execute("UPDATE records SET leased = leased + 1 WHERE id = %(rid)s", p)
            return True
        return self._run(work)

    def lease_soft(self, user: str, n: int, now: float) -> list[int]:
        """Up to n soft leases for the person's prefetch buffer (gold where due, up to the quota); never a takeover."""
        if n <= 0:
            return []
        p = self._params(user, now, n=n, hard=False)

        def work(cur: psycopg.Cursor) -> list[int]:
            dealt = self._begin(cur, p)
            if dealt is None:
                return self._grant(cur, p)
            out: list[int] = []
            while len(out) < n:
                rid = self._gold_lease(cur, p, dealt)
                if rid is None and dealt.room > 0:
                    got = self._grant(cur, {**p, "n": 1})
                    rid = got[0] if got else None
                    if rid is not None:
                        dealt.total += 1
                        dealt.room -= 1
                if rid is None:
                    break
                out.append(rid)
            return out
        return self._run(work)

    def promote(self, user: str, record_id: int, now: float) -> bool:
        """Soft -> hard (on screen). False when the lease was lost or the record completed meanwhile."""
        p = self._params(user, now, rid=record_id)

        def work(cur: psycopg.Cursor) -> bool:
            cur.execute(f"""
                UPDATE leases l SET hard = true, expires_at = %(exp)s FROM records r
                WHERE l.user_id = %(u)s AND l.record_id = %(rid)s AND l.expires_at >= %(now)s
                  AND r.id = l.record_id AND {_LIVE}
                RETURNING l.record_id""", p)
            if cur.fetchone() is not None:
                return True
            self._drop(cur, p, _ONE)  # a completed record's soft lease frees its slot
            return False
        return self._run(work)

    def next(self, user: str, now: float, answered: Sequence[int] = ()) -> QueueState:
        """A new hard lease: open or fresh record, else one the person already holds, else a takeover.

        `answered`: records this person answered whose commit is still queued;
        their leases are not offered again. Any other lease of theirs is, soft
        (buffered) or hard (the screen of a session that ended, e.g. on a
        replica that died), so nobody is told "done" while holding work.
        """
        p = self._params(user, now, n=1, hard=True, answered=list(answered))

        def work(cur: psycopg.Cursor) -> QueueState | None:
            dealt = self._begin(cur, p)
            gold = self._gold_lease(cur, p, dealt)
            if gold is not None:
                return QueueState("ready", gold)
            room = dealt is None or dealt.room > 0
            got = self._grant(cur, p) if room else []
            if got:
                return QueueState("ready", got[0])
            cur.execute(f"""
                UPDATE leases SET hard = true, expires_at = %(exp)s
                WHERE user_id = %(u)s AND record_id = (
                    SELECT l.record_id FROM leases l JOIN records r ON r.id = l.record_id
                    WHERE l.user_id = %(u)s AND NOT l.record_id = ANY(%(answered)s) AND l.expires_at >= %(now)s
                      AND {_LIVE}
                    ORDER BY r.gold DESC, r.rank, r.id LIMIT 1)
                RETURNING record_id""", p)
            own = cur.fetchone()
            if own is not None:
                return QueueState("ready", int(own[0]))
            if not room:
                return QueueState("quota")
            taken = self._takeover(cur, p)
            if taken is not None:
                return QueueState("ready", taken)
            return self._waiting_or_done(cur, p)

        for _ in range(_ATTEMPTS):
            state = self._run(work)
            if state is not None:
                return state
            time.sleep(0.005)  # a record was locked by another transaction for a moment: look again
        return QueueState("waiting", None, 1, now + 1.0)

    def _takeover(self, cur: psycopg.Cursor, p: dict[str, Any]) -> int | None:
        """Take a record whose last slot sits unseen in someone else's buffer (I5)."""
        cur.execute(f"""
            SELECT r.id FROM records r
            WHERE {_INCOMPLETE} AND NOT r.gold AND {_ELIGIBLE}
              AND EXISTS (SELECT 1 FROM leases s WHERE s.record_id = r.id AND NOT s.hard
                          AND s.user_id <> %(u)s AND s.expires_at >= %(now)s)
            ORDER BY r.touched DESC, r.rank, r.id
            LIMIT 4
            FOR UPDATE OF r SKIP LOCKED""", p)
        for (rid,) in cur.fetchall():
            # the least recently active holder loses it; a lease promoted meanwhile is re-checked and kept
            cur.execute("""
                DELETE FROM leases WHERE (record_id, user_id) = (
                    SELECT record_id, user_id FROM leases
                    WHERE record_id = %(rid)s AND NOT hard AND user_id <> %(u)s AND expires_at >= %(now)s
                    ORDER BY expires_at, user_id LIMIT 1 FOR UPDATE)
                RETURNING user_id""", {**p, "rid": rid})
            if cur.fetchone() is None:
                continue
            cur.execute("INSERT INTO leases (record_id, user_id, hard, replica, expires_at) "
                        "VALUES (%(rid)s, %(u)s, true, %(replica)s, %(exp)s)", {**p, "rid": rid})
            return int(rid)
        return None

    def _waiting_or_done(self, cur: psycopg.Cursor, p: dict[str, Any]) -> QueueState | None:
        """Waiting when everything left is held by others; None when a record the hand-out skipped may be free.

        A record the grant skipped was locked (SKIP LOCKED) by another transaction, such as the writer's
        commit of someone's answer to it: one with no lease, or with a slot left beside the leases of others
        (overlap > 1), is free once that lock goes, so the caller looks again instead of saying "waiting"."""
        cur.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE first_free IS NULL OR has_room), min(first_free) FROM (
                SELECT (SELECT min(l.expires_at) FROM leases l WHERE l.record_id = r.id) AS first_free,
                       r.submitted + r.leased < r.overlap + r.extra_answers AS has_room
                FROM records r WHERE {_INCOMPLETE} AND NOT r.gold AND {_ELIGIBLE}) q""", p)
        left, free, first_free = cur.fetchone()
        if not left:
            return QueueState("done")
        if free:
            return None
        return QueueState("waiting", None, int(left), from_ts(first_free))

    @staticmethod
    def _drop(cur: psycopg.Cursor, p: dict[str, Any], where: str) -> int:
        cur.execute(f"""
            WITH gone AS (DELETE FROM leases WHERE {where} RETURNING record_id),
            counted AS (SELECT record_id, count(*) AS n FROM gone GROUP BY record_id),
            fixed AS (UPDATE records r SET leased = r.leased - c.n FROM counted c WHERE r.id = c.record_id
                      RETURNING c.n)
            SELECT coalesce(sum(n), 0) FROM fixed""", p)
        return int(cur.fetchone()[0])

    def release(self, user: str, record_id: int | None, now: float) -> int:
        """End the person's leases (session ended), or one of them; how many were dropped."""
        p = self._params(user, now, rid=record_id)
        return self._run(lambda cur: self._drop(cur, p, _ALL if record_id is None else _ONE))

    def release_replica(self, now: float) -> int:
        """A replica shutting down cleanly hands its people's leases back at once."""
        p = self._params(None, now)
        return self._run(lambda cur: self._drop(cur, p, "replica = %(replica)s"))

    # --- reads -------------------------------------------------------------------

    def holds(self, user: str, record_id: int, now: float) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT 1 FROM leases WHERE user_id = %s AND record_id = %s AND expires_at >= %s",
                               [user, record_id, to_ts(now)]).fetchone()
        return row is not None

    def has_answered(self, user: str, record_id: int) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT 1 FROM responses WHERE record_id = %s AND user_id = %s",
                               [record_id, user]).fetchone()
        return row is not None

    def counts(self, now: float) -> dict[str, int]:
        """Team progress, as the scheduler reports it (model.record_status over the records' counters)."""
        p = self._params(None, now)
        with self._pool.connection() as conn:
            # a handful of (submitted, need) groups whatever the number of records
            groups = conn.execute("SELECT submitted, overlap + extra_answers, count(*) FROM records WHERE NOT gold "
                                  "GROUP BY 1, 2").fetchall()
            # from the lease rows, not a probe per record (that was 0.3 s at 100,000 records)
            leased = conn.execute("SELECT count(DISTINCT record_id) FROM leases WHERE expires_at >= %(now)s "
                                  "AND record_id NOT IN (SELECT id FROM records WHERE gold)", p).fetchone()[0]
            skips = conn.execute("SELECT count(*) FROM responses WHERE status = 'skipped' "
                                 "AND record_id NOT IN (SELECT id FROM records WHERE gold)").fetchone()[0]
        by_status: Counter[str] = Counter()
        for submitted, need, n in groups:
            by_status[record_status(submitted, need)] += n
        return {"records": sum(n for _, _, n in groups), "complete": by_status["complete"],
                "partial": by_status["partial"], "untouched": by_status["untouched"], "leased": leased,
                "submissions": sum(submitted * n for submitted, _, n in groups), "skips": skips}

    def answered_open(self, user: str) -> int:
        """How many incomplete records this person has answered (their share of what is left)."""
        p = self._params(user, 0.0)
        with self._pool.connection() as conn:
            return int(conn.execute(f"""
                SELECT count(*) FROM responses x JOIN records r ON r.id = x.record_id
                WHERE x.user_id = %(u)s AND {_INCOMPLETE} AND NOT r.gold""", p).fetchone()[0])

    def leases(self, now: float) -> dict[str, list[tuple[int, str]]]:
        """Live leases by person, in hand-out order: [(record_id, "soft"|"hard")]."""
        out: dict[str, list[tuple[int, str]]] = {}
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT l.user_id, l.record_id, l.hard FROM leases l JOIN records r "
                                "ON r.id = l.record_id WHERE l.expires_at >= %s ORDER BY l.user_id, r.rank, r.id",
                                [to_ts(now)]).fetchall()
        for user, rid, hard in rows:
            out.setdefault(user, []).append((int(rid), "hard" if hard else "soft"))
        return out
