"""The crowd against every question kind in one run: one label, several questions, preference, boxes, gold + quota.

    python bench/crowd_kinds.py --users 200 --seconds 60

Each task runs as `bench/crowd.py --task` does (a fresh server and DATA_DIR per
run, the same simulated annotators, the same measured window; see crowd.py),
one after the other, the order reversed every other round (`--rounds`), and
one table compares them. Each run gets a source big enough that the crowd
does not run out of records (`crowd.py`'s sizing: 1.5 times the answers the
run needs), with images of their own (the server renders and caches every
one, as it would real ones):

- one label: crowd.py's own task on its generated JPEGs (the baseline of the
  earlier tables);
- questions: `examples/questions/task.toml` (label, labels, rating, text) on
  the same JPEGs;
- preference: `examples/preference/task.toml` on the shipped pairs
  (`examples/preference/pairs`), copied as often as needed, each copy's
  pixels nudged so every image is its own;
- boxes: `examples/boxes/task.toml` on images made by
  `examples/boxes/make_images.py` (its `make`), as many as needed;
- gold + quota: `bench/gold_quota/task.toml` (one label; a gold file naming
  every tenth record of the shipped sample `data/images`, `gold_rate = 0.1`)
  on copies of that sample, its gold file extended to every tenth record of
  the copies, and `max_answers_per_person` set for the run so that a few
  people reach it (the earliest arrivals' mean count plus one standard
  deviation; see `quota_for`).

Checked after each run, from the store (loadgen.check_store): 0 records over
their overlap and 0 accepted answers lost (gold records, which have no
overlap, left out), 0 people told "done" while work remained (a person at the
quota is told `quota`, leaves, and is no false "done"), 0 people past the
quota.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crowd  # noqa: E402
import loadgen  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["one-label", "questions", "preference", "boxes", "gold-quota"]
GOLD_TASK = ROOT / "bench" / "gold_quota" / "task.toml"
GOLD_EVERY = 10  # every tenth record of the sample is gold (gold_rate 0.1)


# --- sources ---------------------------------------------------------------------


def copies_of(src: Path, files: list[str], dst: Path, copies: int) -> None:
    """`copies` copies of `files` (paths relative to `src`) under dst/r<k>/, each image with one pixel changed
    so no two are the same content (the server keys its rendering cache by content)."""
    for k in range(copies):
        for rel in files:
            out = dst / f"r{k:03d}" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src / rel) as img:
                img = img.convert("RGB")
                img.putpixel((0, 0), (k % 256, (k // 256) % 256, 7))
                img.save(out)


def preference_source(dst: Path, records: int) -> Path:
    """The shipped pairs, copied until there are `records` of them, with their metadata.jsonl."""
    src = ROOT / "examples" / "preference" / "pairs"
    rows = [json.loads(line) for line in (src / "metadata.jsonl").read_text().splitlines() if line.strip()]
    copies = math.ceil(records / len(rows))
    copies_of(src, sorted({row[k] for row in rows for k in ("image_a", "image_b")}), dst, copies)
    lines = [json.dumps({**row, "image_a": f"r{k:03d}/{row['image_a']}", "image_b": f"r{k:03d}/{row['image_b']}"})
             for k in range(copies) for row in rows]
    (dst / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def boxes_source(dst: Path, records: int) -> Path:
    """`records` images with shapes and pre-labels, made by the boxes example's own generator."""
    spec = importlib.util.spec_from_file_location("make_boxes", ROOT / "examples" / "boxes" / "make_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(dst, records)
    return dst


def sample_files(root: Path) -> list[str]:
    """The shipped sample's images (data/images/<shape>/...), in the order gold is picked from."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".png", ".jpg"))


def gold_lines(files: list[str]) -> list[str]:
    """A gold file's lines for every GOLD_EVERY-th of `files` (paths under the source, "<shape>/<name>"
    possibly after a copy's folder): the expected answer is the shape folder the sample put it in."""
    out = []
    for rel in files[::GOLD_EVERY]:
        shape = rel.split("/")[-2]
        out.append(json.dumps({"key": "folder:" + rel, "answer": shape,
                               "explanation": f"The outline is a {shape}."}))
    return out


def quota_for(args: argparse.Namespace, gold_rate: float) -> int:
    """A quota a few people reach: the earliest arrivals' mean count of answers that are no gold, plus one
    standard deviation (a Poisson count of clicks at one per `think` seconds)."""
    mean = (1 - gold_rate) * (args.ramp + args.duration) / args.think
    return max(1, math.ceil(mean + math.sqrt(mean)))


def gold_quota_task(dst: Path, records: int, args: argparse.Namespace) -> tuple[Path, Path]:
    """bench/gold_quota/task.toml on copies of data/images: (task file, source folder)."""
    src = ROOT / "data" / "images"
    files = sample_files(src)
    copies = math.ceil(records / len(files))
    source = dst / "source"
    copies_of(src, files, source, copies)
    (dst / "gold.jsonl").write_text("\n".join(gold_lines(sorted(f"r{k:03d}/{rel}" for k in range(copies)
                                                                for rel in files))) + "\n")
    text = GOLD_TASK.read_text()
    quota = quota_for(args, crowd.load_task(GOLD_TASK).quality.gold_rate)
    lines = [f"max_answers_per_person = {quota}" if line.startswith("max_answers_per_person") else line
             for line in text.splitlines()]
    task = dst / "task.toml"
    task.write_text("\n".join(lines) + "\n")
    return task, source


# --- the run -----------------------------------------------------------------------


def crowd_args(args: argparse.Namespace, task: Path | None, source: Path | None) -> argparse.Namespace:
    argv = ["--annotators", str(args.users), "--duration", str(args.seconds), "--think", str(args.think),
            "--commit-delay-ms", str(args.commit_delay_ms), "--app", "ours", "--seed", str(args.seed),
            "--records", str(args.records)]
    if args.ramp is not None:
        argv += ["--ramp", str(args.ramp)]
    if task is not None:
        argv += ["--task", str(task), "--source", str(source)]
    return crowd.parse_args(argv)


def prepare(kind: str, run: Path, args: argparse.Namespace) -> tuple[Path | None, Path]:
    """(task file or None for crowd.py's one-label task, source folder) for one kind."""
    jpegs = run / "source"
    if not jpegs.exists():
        loadgen.make_images(jpegs, args.records, seed=args.seed)
    if kind == "one-label":
        return None, jpegs
    if kind == "questions":
        return ROOT / "examples" / "questions" / "task.toml", jpegs
    folder = run / f"source-{kind}"
    if kind == "preference":
        if not folder.exists():
            preference_source(folder, args.records)
        return ROOT / "examples" / "preference" / "task.toml", folder
    if kind == "boxes":
        if not folder.exists():
            boxes_source(folder, args.records)
        return ROOT / "examples" / "boxes" / "task.toml", folder
    shutil.rmtree(folder, ignore_errors=True)
    return gold_quota_task(folder, args.records, crowd_args(args, None, None))


ROWS = [("annotations/s", "annotations_per_s"),
        ("click-to-next p50 ms", "click_to_next_p50_ms"), ("click-to-next p99 ms", "click_to_next_p99_ms"),
        ("click p99 ms", "click_p99_ms"), ("answer-to-saved p99 ms", "answer_to_saved_p99_ms"),
        ("images on click path / preloaded", None),
        ("server CPU ms/annotation", "server_cpu_ms_per_annotation"), ("server peak RSS MB", "server_peak_rss_mb"),
        ("other processes CPU cores", "other_processes_cpu_cores"), ("errors", "error_count")]
STORE_ROWS = [("accepted answers", "accepted"), ("over overlap", "over_overlap"),
              ("lost (accepted missing)", "accepted_missing"), ("saved missing", "saved_missing"),
              ("told done", "told_done"), ("false done", "false_done"), ("gold records", "gold_records"),
              ("gold answers", "gold_answers"), ("at quota", "at_quota"), ("over quota", "over_quota")]


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = [["metric"] + names]
    for label, key in ROWS:
        if key is None:
            lines.append([label] + [f"{r['image_fetches_on_click_path']} / {r['preload_fetches']}"
                                    for r in results.values()])
        else:
            lines.append([label] + [crowd._fmt(r.get(key)) for r in results.values()])
    for label, key in STORE_ROWS:
        lines.append([label] + [crowd._fmt(r["store"].get(key)) for r in results.values()])
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    for name, r in results.items():
        if r["errors"]:
            out.append(f"errors ({name}): " + ", ".join(f"{k}={v}" for k, v in sorted(r["errors"].items())))
    return "\n".join(out)


def failures(results: dict[str, dict[str, Any]]) -> list[str]:
    """The contract's checks that did not hold, one line each."""
    bad = []
    for name, r in results.items():
        for key in ("over_overlap", "accepted_missing", "saved_missing", "false_done", "over_quota"):
            if r["store"].get(key):
                bad.append(f"{name}: {key} = {r['store'][key]}")
        if not r["clicks"]:
            bad.append(f"{name}: no answer in the measured window")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=200, help="simulated annotators per run")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run, after the ramp")
    p.add_argument("--think", type=float, default=3.0, help="mean think time between clicks, seconds")
    p.add_argument("--ramp", type=float, default=None, help="seconds over which annotators arrive (default N/10)")
    p.add_argument("--commit-delay-ms", type=float, default=30.0, help="added to every fsync of the server")
    p.add_argument("--rounds", type=int, default=1, help="runs of each kind, the order reversed every other round")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"which runs, comma-separated, of {','.join(KINDS)}")
    p.add_argument("--records", type=int, default=0, help="records per run (default: crowd.py's sizing)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="keep the run's files here (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        p.error(f"--kinds: unknown {', '.join(unknown)}; choose among {', '.join(KINDS)}")
    args.records = args.records or crowd_args(args, None, None).records
    command = "python bench/crowd_kinds.py " + " ".join(sys.argv[1:] if argv is None else argv)
    run = args.workdir or Path(tempfile.mkdtemp(prefix="crowd-kinds-"))
    run.mkdir(parents=True, exist_ok=True)
    print(f"{command}\n{len(kinds)} tasks x {args.rounds} round(s), {args.users} annotators, {args.records} "
          f"records each; files in {run}", flush=True)
    users = loadgen.user_names(args.users)
    results: dict[str, dict[str, Any]] = {}
    for n in range(args.rounds):
        for kind in kinds if n % 2 == 0 else kinds[::-1]:
            task, source = prepare(kind, run, args)
            name = kind if args.rounds == 1 else f"{kind} {n + 1}"
            results[name] = crowd.run_one("ours", crowd_args(args, task, source), run, source, users,
                                          name=name.replace(" ", "-"))
    print()
    print(command)
    print(table(results))
    bad = failures(results)
    print("checks: " + ("0 over overlap, 0 lost, 0 false done, 0 over quota in every run" if not bad
                        else "FAILED: " + "; ".join(bad)))
    if args.json:
        args.json.write_text(json.dumps({"command": command, "results": results}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
