"""The README.md of the Hub export: YAML front matter naming the two configs, and what they hold.

Written from the export's summary, so the figures are those of the tables
pushed with it, in the same commit.
"""

from __future__ import annotations

from datetime import timezone

from annotator import metrics
from annotator.task import TaskSpec
from annotator.export.format import RECORDS, RESPONSES
from annotator.export.summary import ExportSummary


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
    """README.md for the export: YAML front matter (the two configs) and a description."""
    import yaml
    front = {
        "pretty_name": task.title,
        "tags": ["annotator", "image-annotation"],
        "task_categories": ["image-classification"],
        "size_categories": [_size_category(summary.records)],
        "configs": [
            {"config_name": RECORDS, "data_files": [{"split": "train", "path": f"{RECORDS}/*.parquet"}],
             "default": True},
            {"config_name": RESPONSES, "data_files": [{"split": "train", "path": f"{RESPONSES}/*.parquet"}]},
        ],
    }
    kind = "one label per image" if task.kind == "single_label" else "any number of labels per image"
    when = summary.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    status = summary.status
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# {task.title}", "",
        f"Image annotations exported by annotator on {when}.", "",
        f"- **Records:** {summary.records} ({status['complete']} complete, {status['partial']} partly done, "
        f"{status['untouched']} untouched)",
        f"- **Answers:** {summary.submitted} submitted and {summary.skipped} skipped, by "
        f"{len(summary.annotators)} annotators",
        f"- **Task:** {task.question} ({kind}); each image is wanted from {task.overlap} "
        f"annotator{'s' if task.overlap != 1 else ''}",
    ]
    if task.kind == "single_label":
        lines.append(f"- **Agreement:** Krippendorff's alpha (nominal) {_alpha_text(summary.alpha)}")
    else:
        lines.append("- **Agreement:** Krippendorff's alpha (nominal) per label, each label as present/absent, "
                     "in the table below")
    if summary.ties:
        lines.append(f"- **Ties:** {summary.ties} records have no majority (listed in `tied`)")
    if summary.missing_images:
        lines.append(f"- **Missing images:** {summary.missing_images} records were exported without their image "
                     f"(the file could not be read)")
    lines += ["", "## Labels", ""]
    names = list(dict.fromkeys((*task.label_names, *sorted(summary.answer_counts))))
    if task.kind == "single_label":
        lines += ["| label | answers | records with this majority |", "|---|---:|---:|"]
        lines += [f"| {_cell(n)} | {summary.answer_counts[n]} | {summary.majority_counts[n]} |" for n in names]
    else:
        lines += ["| label | answers | records with this label in the majority | alpha |", "|---|---:|---:|---|"]
        for n in names:
            alpha = summary.alpha_per_label.get(n)
            shown = f"{alpha.value:.3f} (n={alpha.n_records})" if alpha and alpha.value is not None else "n/a"
            lines.append(f"| {_cell(n)} | {summary.answer_counts[n]} | {summary.majority_counts[n]} | {shown} |")
    if task.guidelines.strip():
        lines += ["", "## Guidelines given to annotators", "", task.guidelines.strip()]
    lines += [
        "", "## Configs", "",
        f"- `{RECORDS}` (default): one row per image: `image`, `record_id`, `source_key`, `metadata` (JSON), "
        "`suggestion`, `majority` (None when tied), `tied`, `agreement` (share of agreeing answer pairs), "
        "`n_answers`, `n_skipped`, `status` (complete / partial / untouched) and `answers` "
        "(annotator, answer, comment, time, time_spent_ms).",
        f"- `{RESPONSES}`: one row per answer, skips included (`status` = skipped).", "",
        "```python", "from datasets import load_dataset", "",
        f'records = load_dataset("{repo_id}", "{RECORDS}", split="train")',
        f'responses = load_dataset("{repo_id}", "{RESPONSES}", split="train")', "```", "",
        "## How it was made", "",
        "Exported by annotator, a multi-user image annotation app: annotators signed in with their Hugging "
        "Face account and labelled images handed out by the server (each image to at most the wanted number "
        "of people at a time). A record is complete when that many people submitted an answer. Each export "
        "replaces the previous one; the repository history keeps the earlier versions.", "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
