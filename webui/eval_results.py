"""An evaluation's answers row by row, as the Evaluate tab shows and offers them: predictions.jsonl
grouped by data row, the filters (every row, where model A differs from the reference, where A and B
differ), the side-by-side table with each answer coloured by whether it equals the reference, and
the downloads (the rows as CSV, predictions.jsonl as it is), written into the owning job's download
folder inside Gradio's cache (webui.downloads). Text and files only: no components, no paddle.
"""

from __future__ import annotations

import csv
import html
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from plumbing.files import atomic_write_text
from webui.i18n import t

FILTERS = ("all", "a-ref", "a-b")
MAX_SHOWN = 200  # rows drawn in the page; the CSV has them all
PROMPT_CHARS = 160
ANSWER_CHARS = 400

CSS = """
.eval-examples {max-height: 640px; overflow: auto; border: 1px solid var(--border-color-primary, #e5e7eb);
                border-radius: 6px;}
.eval-examples table {border-collapse: collapse; font-size: 13px; width: 100%;}
.eval-examples th, .eval-examples td {padding: 4px 8px; vertical-align: top; text-align: left;
                                      border: 1px solid var(--border-color-primary, #e5e7eb);
                                      white-space: pre-wrap; word-break: break-word;}
.eval-examples th {position: sticky; top: 0; background: var(--background-fill-secondary, #f3f4f6);}
.eval-examples td.eval-differs {background: rgba(220, 38, 38, 0.16);}
.eval-examples td.eval-match {background: rgba(22, 163, 74, 0.16);}
.eval-examples td.eval-skipped {font-style: italic; opacity: 0.75;}
.eval-answers {margin-top: 26px;}
.eval-note {font-size: 0.9em; margin: 4px 0;}
"""


@dataclass
class ExampleRow:
    """One data row: its prompt and reference, and each checkpoint's prediction line."""
    index: int
    line: int
    prompt: list
    reference: str | None
    answers: dict = field(default_factory=dict)  # model -> its line of predictions.jsonl

    @property
    def question(self) -> str:
        """The prompt's last user turn (the conversation before it is in the JSONL)."""
        users = [turn.get("content", "") for turn in self.prompt
                 if isinstance(turn, dict) and turn.get("role") == "user"]
        return str(users[-1]) if users else ""


def example_rows(predictions: list[dict]) -> list[ExampleRow]:
    """predictions.jsonl's lines grouped by data row, in data order."""
    rows: dict[int, ExampleRow] = {}
    for line in predictions:
        row = rows.get(line["index"])
        if row is None:
            row = rows[line["index"]] = ExampleRow(line["index"], line.get("line", 0), line.get("prompt") or [],
                                                   line.get("reference"))
        row.answers[line["model"]] = line
    return [rows[index] for index in sorted(rows)]


def matches(row: ExampleRow, model: str) -> bool | None:
    """Whether `model`'s answer equals the reference (as exact match counts it); None without a
    reference or before the model answered. A skipped prompt never matches."""
    line = row.answers.get(model)
    if row.reference is None or line is None:
        return None
    scores = line.get("scores")
    if isinstance(scores, dict) and "exact_match" in scores:
        return bool(scores["exact_match"])
    answer = line.get("answer")
    return answer is not None and answer.strip() == row.reference.strip()


def _answer(row: ExampleRow, model: str) -> tuple[bool, str] | None:
    """(answered, the answer stripped); None before the model got to the row."""
    line = row.answers.get(model)
    if line is None:
        return None
    answer = line.get("answer")
    return (answer is not None, (answer or "").strip())


def differ(row: ExampleRow, a: str, b: str) -> bool:
    """Whether A and B answered the row differently; False until both have answered it."""
    first, second = _answer(row, a), _answer(row, b)
    return first is not None and second is not None and first != second


def filtered(rows: list[ExampleRow], mode: str, a: str | None, b: str | None) -> list[ExampleRow]:
    """The rows a filter keeps: all, those where A differs from the reference, or where A and B differ."""
    if mode == "a-ref" and a:
        return [row for row in rows if matches(row, a) is False]
    if mode == "a-b" and a and b:
        return [row for row in rows if differ(row, a, b)]
    return list(rows)


def default_pair(models: list[str], labels: dict[str, str]) -> tuple[str | None, str | None]:
    """(A, B) before any choice: the tuned model (else the last one that is a job's, which the tab
    labels, else the last) against the base (else the first other one)."""
    if not models:
        return None, None
    by_label = {label: model for model, label in labels.items() if model in models}
    a = by_label.get("tuned") or next((m for m in reversed(models) if m in labels), models[-1])
    return a, by_label.get("base") or next((m for m in models if m != a), a)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _answer_cell(row: ExampleRow, model: str, failed: bool, lang: str) -> str:
    line = row.answers.get(model)
    if line is None:
        text = t("msg-eval-model-failed" if failed else "msg-eval-not-answered", lang)
        return f'<td class="eval-skipped" data-model="{html.escape(model)}">{html.escape(text)}</td>'
    if line.get("answer") is None:
        why = t("msg-eval-skipped", lang, why=line.get("skipped") or "")
        return f'<td class="eval-skipped eval-differs" data-model="{html.escape(model)}">{html.escape(why)}</td>'
    answer = line["answer"]
    match = matches(row, model)
    kind = {True: "eval-match", False: "eval-differs", None: "eval-answer"}[match]
    return (f'<td class="{kind}" data-model="{html.escape(model)}" title="{html.escape(answer)}">'
            f'{html.escape(_cut(answer.strip(), ANSWER_CHARS))}</td>')


def table_html(rows: list[ExampleRow], total: int, models: list[str], names: dict[str, str], lang: str,
               failed: frozenset[str] = frozenset()) -> str:
    """The filtered rows side by side (at most MAX_SHOWN): #, the question, the reference and each
    checkpoint's answer, coloured against the reference (a `failed` checkpoint's cells say so); a
    line says how many rows match."""
    if not rows:
        return f'<div class="eval-answers eval-note">{html.escape(t("msg-eval-no-rows", lang))}</div>'
    shown = rows[:MAX_SHOWN]
    if len(rows) > MAX_SHOWN:
        note = t("msg-eval-shown", lang, count=len(rows), total=total, shown=MAX_SHOWN)
    else:
        note = t("msg-eval-matching", lang, count=len(rows), total=total)
    head = "".join(f"<th>{html.escape(text)}</th>" for text in (
        t("msg-eval-col-index", lang), t("msg-col-prompt", lang), t("msg-eval-col-reference", lang),
        *(names[m] for m in models)))
    body = []
    for row in shown:
        reference = row.reference if row.reference is not None else t("msg-eval-no-reference", lang)
        question = row.question
        answers = "".join(_answer_cell(row, m, m in failed, lang) for m in models)
        body.append(f'<tr data-index="{row.index}"><td>{row.index + 1}</td>'
                    f'<td title="{html.escape(question)}">{html.escape(_cut(question, PROMPT_CHARS))}</td>'
                    f'<td>{html.escape(reference)}</td>{answers}</tr>')
    # the component's label sits over the top of its value: the answers start below it
    return (f'<div class="eval-answers"><div class="eval-note">{html.escape(note)} '
            f'{html.escape(t("msg-eval-legend", lang))}</div><div class="eval-examples">'
            f'<table data-rows="{len(shown)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            '</div></div>')


def csv_text(rows: list[ExampleRow], models: list[str], names: dict[str, str]) -> str:
    """Every row: index and line of the data row, the question, the reference, then each
    checkpoint's answer and exact match (empty where there is none)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "line", "prompt", "reference",
                     *(column for m in models for column in (f"answer: {names[m]}", f"exact_match: {names[m]}"))])
    for row in rows:
        cells = []
        for model in models:
            line = row.answers.get(model) or {}
            match = matches(row, model)
            cells += [line.get("answer") if line.get("answer") is not None else "", "" if match is None else int(match)]
        writer.writerow([row.index, row.line, row.question, "" if row.reference is None else row.reference, *cells])
    return out.getvalue()


def _fresh(target: Path, source: Path) -> bool:
    try:
        return target.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except OSError:
        return False


def write_downloads(folder: Path, stem: str, predictions: Path, rows: list[ExampleRow], models: list[str],
                    names: dict[str, str]) -> tuple[Path, Path] | None:
    """(the CSV, a copy of predictions.jsonl) in `folder` (Gradio serves files from its cache as
    they are), rewritten when older than the predictions; None before there are any."""
    if not rows or not predictions.is_file():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    table, lines = folder / f"{stem}.csv", folder / f"{stem}-predictions.jsonl"
    if not _fresh(table, predictions):
        atomic_write_text(table, csv_text(rows, models, names))
    if not _fresh(lines, predictions):
        partial = lines.with_name(lines.name + ".partial")
        shutil.copyfile(predictions, partial)
        os.replace(partial, lines)
    return table, lines
