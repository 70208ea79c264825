"""The baseline: an annotation Space written the straightforward way.

This is what many Gradio annotation Spaces look like, kept honest rather than
made slow on purpose:

- `gr.Blocks` with a `gr.Image(type="filepath")`, a `gr.Radio` of labels, a
  comment box and one Submit button; the current record id lives in `gr.State`;
- queued events (Gradio's default) at the default concurrency limit (1 per
  event function);
- the submit handler does the work inline: INSERT the answer, COMMIT, then
  SELECT the next record this person has not answered whose answer count is
  below the overlap, and return its file path;
- DuckDB on DATA_DIR (the same engine and file system as the real app, so the
  same emulated commit delay applies), a cursor per call, a primary key on
  (record, user) so a person cannot answer a record twice;
- password login through `launch(auth=...)` with the same users.

Nothing is leased: two people who load the page at the same time are shown
the same record, which is how such Spaces end up with more answers per record
than asked for. That is measured, not fixed, here.

Environment: DATA_DIR, SOURCE_DIR (a folder of images), OVERLAP, LABELS
(comma separated), PASSWORD_FILE (JSON {user: password} in plain text, the
benchmark writes it), GRADIO_SERVER_PORT, GRADIO_SERVER_NAME.
Run: `python bench/baseline_app.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import duckdb  # noqa: E402
import gradio as gr  # noqa: E402

DATA_DIR = Path(os.environ.get("DATA_DIR", "baseline-data"))
SOURCE_DIR = Path(os.environ["SOURCE_DIR"]).resolve()
OVERLAP = int(os.environ.get("OVERLAP", "2"))
LABELS = [x.strip() for x in os.environ.get("LABELS", "a,b,c").split(",") if x.strip()]
USERS: dict[str, str] = json.loads(Path(os.environ["PASSWORD_FILE"]).read_text())

DATA_DIR.mkdir(parents=True, exist_ok=True)
con = duckdb.connect(str(DATA_DIR / "baseline.duckdb"))
con.execute("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, path VARCHAR NOT NULL)")
con.execute("CREATE TABLE IF NOT EXISTS annotations (record_id INTEGER NOT NULL, user_id VARCHAR NOT NULL, "
            "label VARCHAR NOT NULL, comment VARCHAR, created_at TIMESTAMP NOT NULL, "
            "PRIMARY KEY (record_id, user_id))")
if con.execute("SELECT count(*) FROM records").fetchone()[0] == 0:
    files = sorted(p for p in SOURCE_DIR.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    con.execute("BEGIN")
    con.executemany("INSERT INTO records VALUES (?, ?)", [(i + 1, str(p)) for i, p in enumerate(files)])
    con.execute("COMMIT")

NEXT_SQL = """
SELECT r.id, r.path FROM records r
WHERE (SELECT count(*) FROM annotations a WHERE a.record_id = r.id) < ?
  AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.record_id = r.id AND a.user_id = ?)
ORDER BY r.id LIMIT 1
"""


def _next(cur: duckdb.DuckDBPyConnection, user: str):
    row = cur.execute(NEXT_SQL, [OVERLAP, user]).fetchone()
    done = cur.execute("SELECT count(*) FROM annotations WHERE user_id = ?", [user]).fetchone()[0]
    if row is None:
        return None, None, f"All done, thank you! You labelled {done} images."
    return row[0], row[1], f"Record {row[0]} · you labelled {done} images"


def load(request: gr.Request):
    cur = con.cursor()
    try:
        rid, path, text = _next(cur, request.username)
    finally:
        cur.close()
    return path, rid, text


def submit(label: str | None, comment: str | None, rid: int | None, request: gr.Request):
    user = request.username
    if rid is None:
        raise gr.Error("Nothing to label: reload the page.")
    if label not in LABELS:
        raise gr.Error("Choose a label first.")
    cur = con.cursor()
    try:
        cur.execute("BEGIN")
        try:
            cur.execute("INSERT INTO annotations VALUES (?, ?, ?, ?, ?)",
                        [rid, user, label, (comment or "")[:2000] or None, dt.datetime.now()])
            cur.execute("COMMIT")
        except duckdb.ConstraintException:
            cur.execute("ROLLBACK")  # answered already (double click): just move on
        except Exception:
            cur.execute("ROLLBACK")
            raise
        next_rid, path, text = _next(cur, user)
    finally:
        cur.close()
    return path, next_rid, text, None, ""


with gr.Blocks(title="Baseline annotation") as demo:
    progress = gr.Markdown()
    image = gr.Image(type="filepath", label="Image", interactive=False)
    record = gr.State(None)
    label = gr.Radio(LABELS, label="Label")
    comment = gr.Textbox(label="Comment (optional)")
    button = gr.Button("Submit", variant="primary")
    button.click(submit, [label, comment, record], [image, record, progress, label, comment], api_name="submit")
    demo.load(load, None, [image, record, progress], api_name="load")


if __name__ == "__main__":
    try:
        demo.queue().launch(
            server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
            auth=lambda u, p: USERS.get(u) == p,
            allowed_paths=[str(SOURCE_DIR)],
            show_error=True,
        )
    finally:
        con.close()
    sys.exit(0)
