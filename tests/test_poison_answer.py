"""One hostile comment cannot stop anyone's saving: the real app, on DuckDB and on PostgreSQL.

Today (issue 11): `{"comment": "\\ud800"}` (a lone surrogate, raw JSON) to
/ann/answer or the `submit` endpoint was accepted, and its group commit
failed forever (UnicodeEncodeError on DuckDB; a NUL failed it on
PostgreSQL): every other person's answers stopped committing. Now the text
is refused at the edge with a 400 and a message, nothing is queued, and the
others' answers are saved as before.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import pytest
from clients import read_store
from pgserver import pg_url  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
from loadgen import CLICK_ROUTE, Browser, Person, Profile, Recorder  # noqa: E402

POISON = ["\\ud800", "ok \\udfff", "\\u0000", "a\\u0000b"]  # as JSON escapes: the raw body a client sends


async def _call_submit(client: httpx.AsyncClient, body: bytes) -> tuple[str | None, str]:
    """The programmatic `submit` endpoint (Gradio's call API): (SSE event, its data)."""
    r = await client.post("/gradio_api/call/submit", content=body, headers={"content-type": "application/json"})
    if r.status_code != 200:
        return f"http {r.status_code}", r.text
    event_id = r.json()["event_id"]
    stream = await client.get(f"/gradio_api/call/submit/{event_id}")
    event = None
    for line in stream.text.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            return event, line[5:].strip()
    return event, stream.text


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_poisoned_comment_is_refused_and_everyone_else_keeps_saving(tmp_path: Path, engine: str,
                                                                    request: pytest.FixtureRequest) -> None:
    names = ["mal", "ann", "bob"]
    env = loadgen.app_env(tmp_path, names, records=40, overlap=2)
    store_url = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    if store_url:
        env["STORE_URL"] = store_url
    loadgen.ingest(env)
    server = loadgen.start_server("ours", env, tmp_path / "server.log")
    found: dict[str, object] = {}

    async def run() -> None:
        rec = Recorder()
        mal, ann, bob = (Browser(server.url, Person(u), rec, timeout=30) for u in names)
        for b in (mal, ann, bob):
            await b.login()
        profile = Profile.from_config((await mal.client.get("/config")).json())
        for b in (mal, ann, bob):
            await b.open_page(profile, heartbeat=False)
        ticket = json.dumps(mal.view.ticket)
        refusals = []
        for bad in POISON:
            raw = f'{{"ticket": {ticket}, "answer": ["cat"], "comment": "{bad}"}}'.encode()
            r = await mal.client.post(f"{CLICK_ROUTE}/answer", content=raw,
                                      headers={"content-type": "application/json"})
            refusals.append((r.status_code, r.json().get("error", "")))
            event, data = await _call_submit(mal.client, f'{{"data": [{ticket}, ["cat"], "{bad}"]}}'.encode())
            refusals.append((400 if event == "error" else event, data))
        found["refusals"] = refusals
        # the others answer on; each answer is reported saved (its commit returned) promptly
        waits = []
        for i in range(4):
            for b in (ann, bob):
                await b.click_label(i % len(profile.labels), comment=f"note {i}")
                started = time.monotonic()
                kind = await b.check_saved()
                waits.append((kind, time.monotonic() - started))
        found["waits"] = waits
        # the poisoner's record is still theirs, and a clean answer with the same ticket is saved
        await mal.click_label(1, comment="a clean comment")
        found["mal_saved"] = await mal.check_saved()
        async with httpx.AsyncClient(base_url=server.url) as anon:
            found["healthz"] = (await anon.get("/healthz")).json()
        for b in (mal, ann, bob):
            await b.close()
        found["accepted"] = {b.person.user: [(a.record_id, a.label) for a in b.person.accepted] for b in (mal, ann, bob)}

    try:
        asyncio.run(run())
    finally:
        server.stop(timeout=60)
        server.kill()
    for status, message in found["refusals"]:  # type: ignore[union-attr]
        assert status == 400 and "The comment contains" in message, (status, message)
    assert [k for k, _ in found["waits"]] == ["saved"] * 8, found["waits"]  # type: ignore[union-attr]
    # reported saved well within the saved check's 3 s wait (a stuck batch never reports it)
    assert max(w for _, w in found["waits"]) < 2.5, found["waits"]  # type: ignore[union-attr]
    assert found["mal_saved"] == "saved"
    healthz = found["healthz"]
    assert healthz["ok"] is True and healthz.get("failed_commits", 0) == 0, healthz  # type: ignore[index]
    log = server.log()
    assert "UnicodeEncodeError" not in log and "DataError" not in log and "retrying in" not in log, log[-3000:]

    snap = read_store(Path(env["DATA_DIR"]), store_url)
    stored = {(r.record_id, r.user_id): (tuple(r.answer.values()), r.comment) for r in snap.responses}
    accepted = found["accepted"]
    assert len(stored) == sum(len(v) for v in accepted.values()) == 9  # type: ignore[union-attr]
    assert stored[(accepted["mal"][0][0], "mal")] == ((accepted["mal"][0][1],), "a clean comment")  # type: ignore[index]
