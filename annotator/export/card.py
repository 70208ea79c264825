"""The README.md of the Hub export: YAML front matter naming its configs, and what they hold.

Written from the export's summary, so the figures are those of the tables
pushed with it, in the same commit.
"""

from __future__ import annotations

from datetime import timezone

from annotator import metrics
from annotator.task import Question, TaskSpec
from annotator.export.format import RECORDS, RESPONSES
from annotator.export.gold import GOLD_CONFIG, GOLD_FILES
from annotator.export.summary import ConfigSummary, ExportSummary, QuestionSummary
from annotator.export.train_configs import task_categories


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _alpha_text(result: metrics.AgreementResult | None) -> str:
    if result is None or result.value is None:
        n = result.n_records if result else 0
        return f"not computable yet ({n} records with two or more answers)"
    return f"{result.value:.3f} over {result.n_records} records with two or more answers ({result.n_answers} answers)"


def dataset_card(task: TaskSpec, summary: ExportSummary, repo_id: str) -> str:
    """README.md for the export: YAML front matter (every config: the two tables, then each ready-to-train
    config with rows in `summary.configs`) and a description."""
    import yaml
    published = [c for c in summary.configs.values() if c.rows]
    front = {
        "pretty_name": task.title,
        "tags": ["annotator", "image-annotation"],
        "task_categories": task_categories(task),
        "size_categories": [_size_category(summary.records)],
        "configs": [
            {"config_name": RECORDS, "data_files": [{"split": "train", "path": f"{RECORDS}/*.parquet"}],
             "default": True},
            {"config_name": RESPONSES, "data_files": [{"split": "train", "path": f"{RESPONSES}/*.parquet"}]},
            *({"config_name": c.name, "data_files": [{"split": "train", "path": f"{c.name}/*.parquet"}]}
              for c in published),
            *([{"config_name": GOLD_CONFIG,
                "data_files": [{"split": "train", "path": f"{GOLD_CONFIG}/{GOLD_FILES}-*.parquet"}]}]
              if summary.gold and summary.gold.answers else []),
        ],
    }
    when = summary.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    status = summary.status
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# {task.title}", "",
        f"Image annotations exported by annotator on {when}.", "",
        f"- **Records:** {summary.records} ({status['complete']} complete, {status['partial']} partly done, "
        f"{status['untouched']} untouched)",
        f"- **Answers:** {summary.submitted} submitted and {summary.skipped} skipped, by "
        f"{len(summary.annotators)} annotators; each image is wanted from {task.overlap} "
        f"annotator{'s' if task.overlap != 1 else ''}",
    ]
    lines.append(f"- **Adjudicated:** {summary.adjudicated} record{'s' if summary.adjudicated != 1 else ''} "
                 f"settled by an admin: their final answer is in `records`' `final`, and the ready-to-train "
                 f"configs use it instead of the consensus")
    if summary.missing_images:
        lines.append(f"- **Missing images:** {summary.missing_images} images were exported without their "
                     f"bytes (the file could not be read)")
    lines += ["", "## Questions", "",
              "Each question is a column of `responses` (null when an answer left it open, and on skips) and, "
              "except text, a consensus column of `records`.", ""]
    for q in task.questions:
        lines += _question_lines(q, summary.questions[q.name])
    if task.guidelines.strip():
        lines += ["", "## Guidelines given to annotators", "", task.guidelines.strip()]
    lines += [
        "", "## Configs", "",
        f"- `{RECORDS}` (default): one row per image: `image`, `record_id`, `source_key`, `metadata` (JSON), "
        "`suggestion`, the consensus of each question in a column named after it, `final` (the final answer "
        "an admin set, by question; null when none) with `final_by` and `final_at`, `tied` (question, label: "
        "the ties left undecided), `agreement` (per question, the share of agreeing answer pairs), "
        "`n_answers`, `n_skipped`, `status` (complete / partial / untouched) and `answers` "
        "(annotator, answer by question, comment, time, time_spent_ms).",
        f"- `{RESPONSES}`: one row per answer, skips included (`status` = skipped): `record_id`, `source_key`, "
        "`annotator`, `status`, a column per question, `comment`, `time_spent_ms`, `created_at`, `updated_at` "
        "(times in UTC).", "",
        "```python", "from datasets import load_dataset", "",
        f'records = load_dataset("{repo_id}", "{RECORDS}", split="train")',
        f'responses = load_dataset("{repo_id}", "{RESPONSES}", split="train")', "```", "",
        *_train_lines(summary, repo_id),
        *(summary.gold.card_lines(repo_id) if summary.gold else []),
        "## How it was made", "",
        "Exported by annotator, a multi-user image annotation app: annotators signed in with their Hugging "
        "Face account and labelled images handed out by the server (each image to at most the wanted number "
        "of people at a time). A record is complete when that many people submitted an answer. Each export "
        "replaces the previous one; the repository history keeps the earlier versions.", "",
    ]
    return "\n".join(lines)


def _train_lines(summary: ExportSummary, repo_id: str) -> list[str]:
    """The card's part on the ready-to-train configs: a section per config, and those left out for want of rows."""
    if not summary.configs:
        return []
    lines = ["## Ready-to-train configs", "",
             "Derived from `records` at each export, for training as they come: `record_id` and `image` "
             "(embedded), then the question's columns.", ""]
    for c in summary.configs.values():
        if c.rows:
            lines += _config_lines(c, repo_id)
    empty = [c for c in summary.configs.values() if not c.rows]
    if empty:
        lines += ["Not published in this export, for want of rows: " + ", ".join(
            f"`{c.name}` (question `{c.question}`{_left_out_text(c)})" for c in empty) + ".", ""]
    return lines


def _config_lines(c: ConfigSummary, repo_id: str) -> list[str]:
    return [f"### `{c.name}`", "",
            f"From question `{c.question}`: {c.holds}. **{c.rows} rows**{_left_out_text(c)}.", "",
            "```python", f'ds = load_dataset("{repo_id}", "{c.name}", split="train")', "```", ""]


def _left_out_text(c: ConfigSummary) -> str:
    reasons = [f"{reason}: {n}" for reason, n in c.left_out.items() if n]
    return f"; left out: {', '.join(reasons)}" if reasons else ""


_KIND_TEXT = {"label": "one label", "labels": "any number of labels", "rating": "a whole-number rating",
              "text": "free text", "boxes": "labelled boxes drawn on the image",
              "preference": "one of the record's images (its number), or tie / both_bad"}


def _question_lines(q: Question, qs: QuestionSummary) -> list[str]:
    """A question's part of the card: what was asked, its column type, consensus and agreement."""
    if q.kind == "rating":
        ends = f" ({q.low_word} to {q.high_word})" if q.low_word or q.high_word else ""
        shape = f"{q.low} to {q.high}{ends}; column type int32, consensus: the median (float64)"
    elif q.kind == "text":
        shape = (f"{q.min_chars} to {q.max_chars} characters; column type string, no consensus; "
                 f"{qs.answers} answers, {_mean(qs.mean_chars)} characters on average")
    elif q.kind == "labels":
        shape = ("column type list of strings, consensus: the labels more than half of the answers chose "
                 "(a label chosen by exactly half is listed in `tied`)")
    elif q.kind == "boxes":
        shape = ("column type list of {label, bbox [x, y, width, height] in original pixels, suggested (true: "
                 "a pre-label accepted unchanged)}; consensus: the boxes more than half of the answers drew "
                 "(same label, overlap at or above the IoU threshold), each at the median of their corners")
    else:
        shape = "column type string, consensus: the majority label (None on a tie, the tied labels in `tied`)"
    lines = [f"### `{q.name}`: {q.title}", "",
             f"- **Kind:** {q.kind}, {_KIND_TEXT[q.kind]}{'' if q.required else ' (optional)'}; {shape}"]
    if q.kind in ("label", "preference"):
        lines.append(f"- **Agreement:** Krippendorff's alpha (nominal) {_alpha_text(qs.alpha)}")
    elif q.kind == "rating":
        lines.append(f"- **Agreement:** Krippendorff's alpha (ordinal) {_alpha_text(qs.alpha)}")
    elif q.kind == "labels":
        lines.append("- **Agreement:** Krippendorff's alpha (nominal) per label, each label as present/absent, "
                     "in the table below")
    elif q.kind == "boxes":
        f1 = "not computable yet (" if qs.mean_f1 is None else f"{qs.mean_f1:.3f} (over "
        lines.append(f"- **Agreement:** mean F1 of each pair of answers' boxes {f1}{qs.f1_records} records with "
                     "two or more answers; per record in `agreement`)")
        names = list(dict.fromkeys((*q.label_names, *sorted(qs.answer_counts))))
        lines += ["", "| label | boxes drawn | boxes in the consensus |", "|---|---:|---:|"]
        lines += [f"| {_cell(n)} | {qs.answer_counts[n]} | {qs.majority_counts[n]} |" for n in names]
    if qs.ties:
        lines.append(f"- **Ties:** {qs.ties} records have no consensus on some label (listed in `tied`)")
    if q.kind == "rating":
        lines += ["", "| rating | answers |", "|---:|---:|"]
        lines += [f"| {v} | {qs.answer_counts[str(v)]} |" for v in q.scale]
    elif q.kind in ("label", "labels", "preference"):
        names = list(dict.fromkeys((*q.label_names, *sorted(qs.answer_counts))))
        if q.kind != "labels":
            lines += ["", "| label | answers | records with this majority |", "|---|---:|---:|"]
            lines += [f"| {_cell(n)} | {qs.answer_counts[n]} | {qs.majority_counts[n]} |" for n in names]
        else:
            lines += ["", "| label | answers | records with this label in the majority | alpha |",
                      "|---|---:|---:|---|"]
            for n in names:
                alpha = qs.alpha_per_label.get(n)
                shown = f"{alpha.value:.3f} (n={alpha.n_records})" if alpha and alpha.value is not None else "n/a"
                lines.append(f"| {_cell(n)} | {qs.answer_counts[n]} | {qs.majority_counts[n]} | {shown} |")
    return lines + [""]


def _mean(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
