"""The Data tab: upload (drag and drop or file chooser; a zip of a data file and its images, or a
data file dropped with its images), validation report with every error's file, line and field, a
paged preview (thumbnails beside rows with images), statistics with a token-length histogram and
image statistics, and the stored datasets (reuse in the training form, delete).

Validation and character statistics run in this process (trainer.data has no paddle); token counts
need the tokenizer, so they come from `python -m trainer data check --json` in a subprocess
(webui.dataset_store.count_tokens) and are cached per model and length.

The views are named tuples whose fields are named after the DataTab components they go to
(`DataTab.updates` turns one into `{component: value}`), so adding a component moves nothing else.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from models.registry import DEFAULT_MODEL, MODELS
from trainer.data.images import IMAGE_EXTENSIONS
from trainer.data.readers import SUPPORTED_EXTENSIONS, BadRecord
from webui.context import StudioContext
from webui import first_run
from webui.dataset_store import Dataset, DatasetError, count_tokens, human_size, preview_rows
from webui.thumbnails import images_cell
from webui.form import ENTRY_COLUMNS, ENTRY_DEFAULTS, Form, StoredNames, from_widget, to_widget
from webui.form import BY_KEY as FORM_SPECS
from webui.i18n import Phrase, both, message_text, said, t
from webui.views import TabViews

PAGE_SIZE = 10
CELL_CHARS = 300
PREVIEW_WIDTHS = ["9%", "7%", "18%", "36%", "30%"]
IMAGE_PREVIEW_WIDTHS = ["7%", "5%", "12%", "30%", "24%", "22%"]
# Token counting starts a tokenizer process; two at a time at most, whichever event asked.
TOKEN_COUNT = {"concurrency_id": "token-count", "concurrency_limit": 2}


class Report(NamedTuple):
    """A dataset's validation report, first preview page and statistics."""
    summary: Any
    errors: Any
    errors_note: Any
    report: Any
    preview: Any
    page_label: Any
    page: int
    stats: Any
    histogram: Any


class Page(NamedTuple):
    preview: Any
    page_label: Any
    page: int


class Tokens(NamedTuple):
    stats: Any
    histogram: Any


class Stored(NamedTuple):
    """What an upload leaves: one line per file, the list, an empty upload box, and the sample
    offer gone once a dataset is stored."""
    status: str
    table: Any
    select: Any
    upload: None
    samples: Any


class Listing(NamedTuple):
    table: Any
    select: Any
    status: str
    first_steps: Any
    samples: Any


class DeleteQuestion(NamedTuple):
    confirm_row: Any
    question: str
    status: str


class Deleted(NamedTuple):
    confirm_row: Any
    table: Any
    select: Any
    status: str
    samples: Any


class Added(NamedTuple):
    """The training form's data.train or data.eval table (a Train tab widget), and the status line."""
    entries: Any
    status: str


@dataclass
class DataTab(TabViews):
    upload: gr.File
    status: gr.Markdown
    table: gr.Dataframe
    select: gr.Dropdown
    token_model: gr.Dropdown
    max_len: gr.Number
    add_train: gr.Button
    add_eval: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    question: gr.Markdown
    confirm: gr.Button
    cancel: gr.Button
    summary: gr.Markdown
    errors: gr.Dataframe
    errors_note: gr.Markdown
    report: gr.Row
    preview: gr.Dataframe
    prev: gr.Button
    next: gr.Button
    page_label: gr.Markdown
    page: gr.State
    stats: gr.Markdown
    histogram: gr.BarPlot
    first_steps: gr.Markdown  # the way to a first tuned model, until a job has completed
    samples: gr.Column  # the sample datasets on offer while none is stored
    sample_sft: gr.Button
    sample_dpo: gr.Button

    def updates(self, view: NamedTuple) -> dict:
        """As TabViews', with a preview frame sent with its columns' types: a page with images has
        a markdown column of thumbnails, and a page without sets the table back to plain text."""
        out = super().updates(view)
        frame = out.get(self.preview)
        if isinstance(frame, pd.DataFrame):
            images = frame.attrs.get("images", False)
            out[self.preview] = gr.update(
                value=frame, datatype=["str"] * (len(frame.columns) - 1) + ["markdown"] if images else "str",
                column_widths=IMAGE_PREVIEW_WIDTHS if images else PREVIEW_WIDTHS)
        return out


def build(ctx: StudioContext) -> DataTab:
    T = ctx.texts
    first_steps = first_run.build_first_steps(ctx)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            upload = T.make(gr.File, "data-upload", file_count="multiple", type="filepath",
                            file_types=[*SUPPORTED_EXTENSIONS, ".zip", *IMAGE_EXTENSIONS], height=150)
            T.make(gr.Markdown, "data-hint", fmt={"limit": human_size(ctx.max_upload_bytes)})
            samples, sample_sft, sample_dpo = first_run.build_samples(ctx)
            with gr.Row():
                token_model = T.make(gr.Dropdown, "data-token_model", choices=list(MODELS), value=DEFAULT_MODEL,
                                     allow_custom_value=True)
                max_len = T.make(gr.Number, "data-max_seq_len", value=FORM_SPECS["data.max_seq_len"].default,
                                 precision=0, minimum=1)
            status = gr.Markdown(elem_id="data-status")
        with gr.Column(scale=3):
            table = T.make(gr.Dataframe, "data-list", interactive=False, max_height=240, wrap=True,
                           column_widths=["21%", "11%", "8%", "8%", "10%", "9%", "17%", "16%"])
            select = T.make(gr.Dropdown, "data-select", choices=[], value=None)
            with gr.Row():
                add_train = T.make(gr.Button, "data-add_train", variant="primary", size="sm")
                add_eval = T.make(gr.Button, "data-add_eval", size="sm")
                delete = T.make(gr.Button, "data-delete", variant="stop", size="sm")
            with gr.Row(visible=False) as confirm_row:
                question = gr.Markdown(elem_id="data-delete_question")
                confirm = T.make(gr.Button, "data-delete_confirm", variant="stop", size="sm")
                cancel = T.make(gr.Button, "data-delete_cancel", size="sm")
    summary = gr.Markdown(elem_id="data-summary")
    errors = T.make(gr.Dataframe, "data-errors", interactive=False, visible=False, wrap=True, max_height=320,
                    column_widths=["20%", "8%", "22%", "50%"])
    errors_note = gr.Markdown(elem_id="data-errors_note")
    with gr.Row(equal_height=False, visible=False) as report:
        with gr.Column(scale=3):
            T.make(gr.Markdown, "data-preview-title")
            preview = T.make(gr.Dataframe, "data-preview", interactive=False, wrap=True, max_height=420,
                             column_widths=PREVIEW_WIDTHS)
            with gr.Row():
                prev = T.make(gr.Button, "data-prev", size="sm")
                page_label = gr.Markdown(elem_id="data-page")
                nxt = T.make(gr.Button, "data-next", size="sm")
        with gr.Column(scale=2):
            T.make(gr.Markdown, "data-stats-title")
            stats = gr.Markdown(elem_id="data-stats")
            histogram = T.make(gr.BarPlot, "data-histogram", x="tokens", y="rows", height=260, sort=None,
                               x_label_angle=-45, value=histogram_frame(None))
    return DataTab(upload, status, table, select, token_model, max_len, add_train, add_eval, delete, confirm_row,
                   question, confirm, cancel, summary, errors, errors_note, report, preview, prev, nxt, page_label,
                   gr.State(0), stats, histogram, first_steps, samples, sample_sft, sample_dpo)


# -- views -----------------------------------------------------------------------------------------

def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def dataset_table(ctx: StudioContext, lang: str) -> pd.DataFrame:
    cols = [t(f"msg-col-{c}", lang) for c in ("name", "format", "rows", "valid", "invalid", "size", "uploaded", "id")]
    rows = [[d.name, d.format or "?", d.rows_total, d.rows_valid, d.rows_invalid, human_size(d.size),
             _fmt_time(d.created), d.id] for d in ctx.datasets.list()]
    return pd.DataFrame(rows, columns=cols)


def dataset_choices(ctx: StudioContext) -> list[tuple[str, str]]:
    return [(f"{d.name} · {d.format or '?'} · {d.rows_total} · {d.id[:8]}", d.id) for d in ctx.datasets.list()]


def _cut(text: str) -> str:
    text = str(text)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _turns(messages) -> str:
    return "\n".join(f"{m.role}: {m.text}" for m in messages)


def preview_frame(dataset: Dataset, page: int, lang: str) -> pd.DataFrame:
    """One page of rows; a preference dataset shows its chosen and rejected replies side by side,
    and a page with images their thumbnails in a last column (`attrs["images"]` says so)."""
    items = preview_rows(dataset, page, PAGE_SIZE)
    examples = [item["example"] for item in items if item.get("example") is not None]
    pairs = any(example.chosen is not None for example in examples)
    images = any(example.images for example in examples)
    replies = ("chosen", "rejected") if pairs else ("response",)
    cols = [t(f"msg-col-{c}", lang) for c in ("line", "ok", "system", "prompt", *replies, *(("images",) if images
                                                                                                else ()))]
    rows = []
    for item in items:
        example = item.get("example")
        if example is not None:
            turns = [m for m in example.messages if m.role != "system"]
            if example.chosen is not None:
                prompt, answers = turns, [example.chosen, example.rejected]
            else:
                prompt, answers = turns[:-1], [turns[-1].text]
            thumbs = [images_cell(dataset.path.parent, example.images, item["line"])] if images else []
            rows.append([item["line"], "✓", _cut(example.system or ""), _cut(_turns(prompt)),
                         *(_cut(a) for a in answers), *thumbs])
        else:
            raw = item["raw"]
            shown = (raw.text or message_text(raw.message, lang)) if isinstance(raw, BadRecord) else str(raw)
            problems = _cut("; ".join((f"{issue.field}: " if issue.field else "") + message_text(issue.message, lang)
                                      for issue in item["issues"]))
            rows.append([item["line"], "✗", "", _cut(shown), problems, *([""] * (len(cols) - 5))])
    frame = pd.DataFrame(rows, columns=cols)
    frame.attrs["images"] = images
    return frame


def errors_frame(dataset: Dataset, meta: dict, lang: str) -> pd.DataFrame:
    cols = [t(f"msg-col-{c}", lang) for c in ("file", "line", "field", "problem")]
    rows = [[dataset.name, issue.get("line") or "", issue.get("field") or "", message_text(issue, lang)]
            for issue in meta.get("issues", [])]
    return pd.DataFrame(rows, columns=cols)


def summary_text(dataset: Dataset, meta: dict, lang: str) -> str:
    if meta.get("error") and not meta.get("format"):
        error = message_text({"message": meta["error"], "i18n": meta.get("error_i18n")}, lang)
        return t("msg-data-unreadable", lang, name=dataset.name, error=error.splitlines()[0])
    how = t("msg-data-detected", lang)
    key = "msg-data-summary-ok" if meta.get("ok") else "msg-data-summary-bad"
    return t(key, lang, name=dataset.name, format=meta.get("format"), kind=meta.get("kind"), how=how,
             rows_total=meta.get("rows_total", 0), rows_valid=meta.get("rows_valid", 0),
             rows_invalid=meta.get("rows_invalid", 0), issues_total=meta.get("issues_total", 0))


def stats_text(meta: dict, lang: str) -> str:
    stats = meta.get("stats")
    if not stats or not stats.get("rows"):
        return ""
    text = t("msg-data-stats", lang, rows=stats["rows"], turns_mean=stats["turns"]["mean"],
             turns_max=stats["turns"]["max"], multi=stats["multi_turn_rows"], system=stats["with_system"],
             think=stats["with_think"], chars_mean=stats["characters"]["mean"], chars_max=stats["characters"]["max"])
    images = stats.get("images")
    if not images:
        return text
    sizes = {name: "×".join(map(str, size)) for name, size in images["size"].items()}
    return text + "\n\n" + t("msg-data-images", lang, total=images["total"], rows=images["rows"],
                             mean=images["per_row"]["mean"], max=images["per_row"]["max"],
                             smallest=sizes.get("min", "–"), median=sizes.get("median", "–"),
                             largest=sizes.get("max", "–"), tokens_min=images["tokens_per_row"]["min"],
                             tokens_mean=images["tokens_per_row"]["mean"], tokens_max=images["tokens_per_row"]["max"],
                             min_pixels=images["limits"][0], max_pixels=images["limits"][1])


def tokens_text(tokens: dict, model: str, lang: str) -> str:
    if tokens.get("max") is None:
        return ""
    return t("msg-data-tokens", lang, model=model, min=tokens["min"], mean=tokens["mean"], p50=tokens["p50"],
             p95=tokens["p95"], max=tokens["max"], max_seq_len=tokens["max_seq_len"], over=tokens["over_max_seq_len"])


def histogram_frame(tokens: dict | None) -> pd.DataFrame:
    hist = (tokens or {}).get("histogram") or {}
    edges, counts = hist.get("edges", []), hist.get("counts", [])
    labels = [f"{lo}–{hi - 1}" if hi - 1 > lo else str(lo) for lo, hi in zip(edges, edges[1:])]
    # explicit dtypes: an empty column would be float, and the plot would treat the bins as numbers
    return pd.DataFrame({"tokens": pd.Series(labels, dtype="string"), "rows": pd.Series(counts, dtype="int64")})


def histogram_update(tokens: dict | None):
    frame = histogram_frame(tokens)
    return gr.update(value=frame, sort=list(frame["tokens"]))


def _empty_report(summary: str = "") -> Report:
    return Report(summary=summary, errors=gr.update(value=None, visible=False), errors_note="",
                  report=gr.update(visible=False), preview=None, page_label="", page=0, stats="",
                  histogram=histogram_frame(None))


def show_dataset(ctx: StudioContext, dataset_id: str | None, lang: str) -> Report:
    """The report, first preview page and statistics of a dataset (token counts come after)."""
    dataset = ctx.datasets.find(dataset_id) if dataset_id else None
    if dataset is None:
        return _empty_report()
    try:
        meta = ctx.datasets.meta(dataset)
        preview = preview_frame(dataset, 0, lang) if dataset.format else None
    except DatasetError as e:
        return _empty_report(str(e))
    issues = meta.get("issues", [])
    total = meta.get("issues_total", len(issues))
    note = t("msg-data-issues-shown", lang, shown=len(issues), total=total) if total > len(issues) else ""
    return Report(
        summary=summary_text(dataset, meta, lang),
        errors=gr.update(value=errors_frame(dataset, meta, lang), visible=bool(issues)),
        errors_note=note,
        report=gr.update(visible=True),
        preview=preview,
        page_label=_page_label(dataset, 0, lang),
        page=0,
        stats=stats_text(meta, lang),
        histogram=histogram_frame(None),
    )


def _pages(dataset: Dataset) -> int:
    return max(1, math.ceil(dataset.rows_total / PAGE_SIZE))


def _page_label(dataset: Dataset, page: int, lang: str) -> str:
    return t("msg-data-page", lang, page=page + 1, pages=_pages(dataset))


def turn_page(ctx: StudioContext, dataset_id: str | None, page: int, delta: int, lang: str) -> Page:
    dataset = ctx.datasets.find(dataset_id) if dataset_id else None
    if dataset is None or not dataset.format:
        return Page(gr.skip(), gr.skip(), page)
    page = min(max(0, (page or 0) + delta), _pages(dataset) - 1)
    try:
        frame = preview_frame(dataset, page, lang)
    except DatasetError as e:
        return Page(gr.skip(), str(e), page)
    return Page(frame, _page_label(dataset, page, lang), page)


def token_stats(ctx: StudioContext, dataset_id: str | None, model: str, max_len: Any, lang: str):
    """Statistics with token counts; a generator so the 'counting' line shows while the tokenizer runs."""
    dataset = ctx.datasets.find(dataset_id) if dataset_id else None
    if dataset is None or not dataset.rows_valid:
        yield Tokens(gr.skip(), gr.skip())
        return
    meta = ctx.datasets.meta(dataset)
    base = stats_text(meta, lang)
    model = (model or DEFAULT_MODEL).strip()
    try:
        max_len = int(max_len)
    except (TypeError, ValueError):
        max_len = FORM_SPECS["data.max_seq_len"].default
    yield Tokens(base + "\n\n" + t("msg-data-tokens-running", lang, model=model), histogram_frame(None))
    try:
        tokens = count_tokens(ctx.datasets, dataset, model, max_len, python=ctx.python)
    except DatasetError as e:
        yield Tokens(base + "\n\n" + t("msg-data-tokens-failed", lang, error=e.text(lang)), histogram_frame(None))
        return
    yield Tokens(base + "\n\n" + tokens_text(tokens, model, lang), histogram_update(tokens))


def _is_image(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def store_uploads(ctx: StudioContext, files: list[str] | None, lang: str) -> Stored:
    """Store every uploaded file (a zip with its images unpacked); images dropped with one data file
    are stored with it. One line per dataset says what happened."""
    files = list(files or [])
    images = [path for path in files if _is_image(path)]
    lines, last = [], None
    try:
        singles = files
        if images:
            data = [path for path in files if Path(path).suffix.lower() in SUPPORTED_EXTENSIONS]
            singles = [path for path in files if path not in images and path not in data]
            names = ", ".join(Path(path).name for path in (data or images)[:6])
            if len(data) == 1:
                last = _store(ctx, lines, data[0], [(path, Path(path).name) for path in images])
            else:
                key = "msg-upload-images-several" if data else "msg-upload-images-alone"
                lines.append(Phrase("msg-data-refused", {"name": names, "error": Phrase(key, {"n": len(data)})}))
        for path in singles:
            last = _store(ctx, lines, path) or last
    finally:
        for path in files:
            _discard_upload(path)
    choices = dataset_choices(ctx)
    return Stored(both(lambda lg: "\n".join("- " + line.text(lg) for line in lines)), dataset_table(ctx, lang),
                  gr.update(choices=choices, value=last) if last else gr.update(choices=choices), None,
                  first_run.samples_update(ctx))


def _store(ctx: StudioContext, lines: list, path: str, images: list | None = None) -> str | None:
    """Store one upload (with `images`, (path, name) each, if any), adding its line; its id, or None."""
    original = Path(path).name
    try:
        dataset = ctx.datasets.add_with_images(path, original, images) if images else ctx.datasets.add(path, original)
    except (DatasetError, OSError) as e:
        lines.append(Phrase("msg-data-refused", {"name": original,
                                                 "error": e.reason if isinstance(e, DatasetError) else str(e)}))
        return None
    meta = ctx.datasets.meta(dataset)
    stored = "msg-data-stored-images" if meta.get("images") else "msg-data-stored"
    lines.append(Phrase(stored, {"name": dataset.name, "size": human_size(dataset.size), "n": meta.get("images")}))
    if meta.get("left_out"):
        left_out = meta["left_out"]
        lines.append(Phrase("msg-data-left-out", {"name": original, "files": ", ".join(left_out[:8])
                                                  + (", …" if len(left_out) > 8 else "")}))
    return dataset.id


def store_sample(ctx: StudioContext, which: str, lang: str) -> Stored:
    """Store a sample dataset shipped with the studio, as if it had been uploaded, and say what next."""
    stored = store_uploads(ctx, [str(first_run.SAMPLES[which])], lang)
    return stored._replace(status=stored.status + "\n" + said("msg-data-sample-next"))


def _discard_upload(path: str) -> None:
    """Remove Gradio's copy of an upload once the store has its own, so no file is kept twice."""
    spool = os.environ.get("GRADIO_TEMP_DIR")
    if spool and Path(path).resolve().is_relative_to(Path(spool).resolve()):
        Path(path).unlink(missing_ok=True)


def refresh_list(ctx: StudioContext, current: str | None, lang: str) -> Listing:
    choices = dataset_choices(ctx)
    ids = [value for _, value in choices]
    value = current if current in ids else (ids[0] if ids else None)
    note = "" if ids else said("msg-data-empty")
    return Listing(dataset_table(ctx, lang), gr.update(choices=choices, value=value), note,
                   first_run.first_steps_update(ctx), gr.update(visible=not ids))


def add_to(ctx: StudioContext, dataset_id: str | None, current: Any, which: str, lang: str) -> Added:
    """Append the dataset to data.train or data.eval of this session's form."""
    where = Phrase(f"msg-data-{which}")
    dataset = ctx.datasets.find(dataset_id) if dataset_id else None
    if dataset is None:
        return Added(gr.skip(), said("msg-data-pick"))
    spec = FORM_SPECS[f"data.{which}"]
    names = StoredNames(ctx.datasets.list())
    entries = from_widget(spec, current, names)
    path = str(dataset.path)
    if any(entry.get("path") == path for entry in entries):
        return Added(gr.skip(), said("msg-data-already", name=dataset.name, where=where))
    # a format the run config cannot name yet is left for the trainer to detect
    formats = next(item.choices for item in spec.item_fields if item.key == "format")
    entry = dict(ENTRY_DEFAULTS)
    entry.update(path=path, format=dataset.format if dataset.format in formats else "auto")
    entries.append({col: entry[col] for col in ENTRY_COLUMNS})
    return Added(to_widget(spec, entries, lang, names), said("msg-data-added", name=dataset.name, where=where))


def ask_delete(ctx: StudioContext, dataset_id: str | None, lang: str) -> DeleteQuestion:
    dataset = ctx.datasets.find(dataset_id) if dataset_id else None
    if dataset is None:
        return DeleteQuestion(gr.update(visible=False), "", said("msg-data-pick"))
    return DeleteQuestion(gr.update(visible=True), said("msg-data-delete-question", name=dataset.name), "")


def do_delete(ctx: StudioContext, dataset_id: str | None, lang: str) -> Deleted:
    dataset = ctx.datasets.find(dataset_id) if dataset_id else None
    message = ""
    if dataset is not None:
        ctx.datasets.delete(dataset.id)
        message = said("msg-data-deleted", name=dataset.name)
    listing = refresh_list(ctx, None, lang)
    return Deleted(gr.update(visible=False), listing.table, listing.select, message or listing.status,
                   listing.samples)


def connect(ctx: StudioContext, tab: DataTab, form: Form, lang: gr.Radio) -> None:
    """The tab's events; `form` is the training form the add buttons write into."""
    report = tab.outputs(Report)
    tokens_out = tab.outputs(Tokens)
    tokens_in = [tab.select, tab.token_model, tab.max_len, lang]

    def show(dataset_id, lang_value):
        return tab.updates(show_dataset(ctx, dataset_id, lang_value))

    def tokens(dataset_id, model, max_len, lang_value):
        for view in token_stats(ctx, dataset_id, model, max_len, lang_value):
            yield tab.updates(view)

    tab.upload.upload(lambda files, lg: tab.updates(store_uploads(ctx, files, lg)), [tab.upload, lang],
                      tab.outputs(Stored)) \
        .then(show, [tab.select, lang], report, show_progress="hidden") \
        .then(tokens, tokens_in, tokens_out, show_progress="hidden", **TOKEN_COUNT)
    for button, which in ((tab.sample_sft, "sft"), (tab.sample_dpo, "dpo")):
        button.click(lambda lg, which=which: tab.updates(store_sample(ctx, which, lg)), [lang], tab.outputs(Stored)) \
            .then(show, [tab.select, lang], report, show_progress="hidden") \
            .then(tokens, tokens_in, tokens_out, show_progress="hidden", **TOKEN_COUNT)
    tab.select.input(show, [tab.select, lang], report, show_progress="hidden") \
        .then(tokens, tokens_in, tokens_out, show_progress="hidden", **TOKEN_COUNT)
    gr.on([tab.token_model.input, tab.max_len.submit, tab.max_len.blur], tokens, tokens_in, tokens_out,
          show_progress="hidden", trigger_mode="always_last", **TOKEN_COUNT)
    for button, delta in ((tab.prev, -1), (tab.next, 1)):
        button.click(lambda d, p, lg, delta=delta: tab.updates(turn_page(ctx, d, p, delta, lg)),
                     [tab.select, tab.page, lang], tab.outputs(Page))
    for button, which in ((tab.add_train, "train"), (tab.add_eval, "eval")):
        target = form.widgets[f"data.{which}"]

        def add(dataset_id, current, lang_value, which=which, target=target):
            added = add_to(ctx, dataset_id, current, which, lang_value)
            return {target: added.entries, tab.status: added.status}

        button.click(add, [tab.select, target, lang], [target, tab.status])
    tab.delete.click(lambda d, lg: tab.updates(ask_delete(ctx, d, lg)), [tab.select, lang],
                     tab.outputs(DeleteQuestion))
    tab.cancel.click(lambda: gr.update(visible=False), None, tab.confirm_row)
    tab.confirm.click(lambda d, lg: tab.updates(do_delete(ctx, d, lg)), [tab.select, lang], tab.outputs(Deleted)) \
        .then(show, [tab.select, lang], report, show_progress="hidden") \
        .then(tokens, tokens_in, tokens_out, show_progress="hidden", **TOKEN_COUNT)
