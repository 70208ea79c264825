"""Floods beside the crowd (`bench/crowd.py --flood login|person`): what one stranger or one person does to everyone.

- `login`: a stranger sends wrong passwords to `POST /login` at a steady rate
  (`--flood-rate` a second, without waiting for answers, at most 64 in
  flight), from one client address, half for the crowd's own user names and
  half for names that do not exist.
- `person`: one signed-in person (`probe0000`, in every password file the
  crowd writes) posts `/ann/next` back to back on `--flood-connections`
  connections, as fast as the server answers.

Each returns what the flood got back: requests sent and replies by status.
A flood runs in its own process (`start_flood`), as an attacker's would: in
the crowd's event loop it would slow the crowd's own measurements.

    python bench/floods.py login http://127.0.0.1:7860 --rate 20 --names ann0000,ann0001   # Ctrl-C ends it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode, urlsplit


FLOOD_USER = "probe0000"
MAX_IN_FLIGHT = 64


class _Connection:
    """One keep-alive HTTP/1.1 connection spoken by hand: a flood's client must cost next to nothing, or it
    takes the CPU the crowd and the server need on a small machine (httpx spent ~15 ms per request)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str, cookie: str = "") -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {content_type}\r\n"
                          f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers.setdefault(k.strip().lower(), "")
                    headers[k.strip().lower()] += ("; " if headers[k.strip().lower()] else "") + v.strip()
            await self.reader.readexactly(int(headers.get("content-length", "0")))
            return int(lines[0].split()[1]), headers
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def login_flood(url: str, stop: asyncio.Event, rate: float, names: list[str]) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    rng = random.Random(7)
    idle = [_Connection(url) for _ in range(MAX_IN_FLIGHT)]
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def attempt() -> None:
        conn = idle.pop()
        name = rng.choice(names) if rng.random() < 0.5 else f"nobody{rng.randrange(10**6)}"
        try:
            status, _ = await conn.post("/login", urlencode({"username": name, "password": "wrong"}).encode(),
                                        "application/x-www-form-urlencoded")
            statuses[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            statuses[type(exc).__name__] += 1
        finally:
            idle.append(conn)
            in_flight.release()

    tasks = set()
    start, sent = time.monotonic(), 0
    while not stop.is_set():
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        await in_flight.acquire()
        task = asyncio.create_task(attempt())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn in idle:
        conn.close()
    return {"kind": "login", "rate_per_s": rate, "sent": sent, "replies": dict(statuses)}


async def person_flood(url: str, stop: asyncio.Event, connections: int, password: str, route: str
                       ) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    first = _Connection(url)
    status, headers = await first.post("/login", urlencode({"username": FLOOD_USER, "password": password}).encode(),
                                       "application/x-www-form-urlencoded")
    first.close()
    if status != 200:
        raise RuntimeError(f"{FLOOD_USER} could not sign in: {status}")
    cookie = "; ".join(part.split(";")[0] for part in headers.get("set-cookie", "").split("; ")
                       if part.startswith("access-token"))

    async def worker() -> None:
        conn = _Connection(url)
        while not stop.is_set():
            try:
                status, _ = await conn.post(f"{route}/next", b"{}", "application/json", cookie)
                statuses[str(status)] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                statuses[type(exc).__name__] += 1
        conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"kind": "person", "connections": connections, "sent": sum(statuses.values()),
            "replies": dict(statuses)}


class FloodProcess:
    """A flood in a child process; `finish()` stops it and returns what it got back."""

    def __init__(self, kind: str, url: str, *, start_in: float, rate: float, connections: int,
                 names: list[str], password: str, route: str) -> None:
        """Start the process now (its start-up costs CPU) and the flood `start_in` seconds later."""
        self.process = subprocess.Popen(
            [sys.executable, __file__, kind, url, "--start-in", str(start_in), "--rate", str(rate),
             "--connections", str(connections), "--names", ",".join(names), "--password", password,
             "--route", route], stdout=subprocess.PIPE, text=True)

    def finish(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=120)
        return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description="one flood until interrupted (SIGINT); prints its replies as JSON")
    p.add_argument("kind", choices=["login", "person"])
    p.add_argument("url")
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--names", default="")
    p.add_argument("--start-in", type=float, default=0.0, help="seconds to wait before flooding")
    p.add_argument("--password", default="", help=f"person: {FLOOD_USER}'s password")
    p.add_argument("--route", default="/ann", help="person: the page's click routes (annotator.ui.annotate)")
    args = p.parse_args()
    start = time.monotonic() + args.start_in

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        if args.kind == "login":
            return await login_flood(args.url, stop, args.rate, [n for n in args.names.split(",") if n] or ["x"])
        return await person_flood(args.url, stop, args.connections, args.password, args.route)

    print(json.dumps(asyncio.run(run())), flush=True)


if __name__ == "__main__":
    main()
