"""The studio's Gradio Blocks: the tabs (Data, Train, Jobs, Evaluate, Compare, Export, Chat), the
language switch, what a page load does, and the wiring between tabs (a dataset added to the form,
Start showing its job, Clone filling the form, or the Evaluate tab's for an evaluation).
"""

from __future__ import annotations

import gradio as gr
import yaml

from trainer.jobs import JobError
from trainer.eval_jobs import is_eval_config
from webui import chat_tab, compare_tab, data_tab, eval_results, eval_tab, export_tab, job_output, jobs_tab, train_tab
from webui.context import StudioContext
from webui.i18n import DEFAULT_LANG, LANGUAGES, MESSAGE_CSS, SWITCH_JS, said

CSS = """
#studio-header {align-items: center;}
#studio-header .prose h1 {margin-bottom: 0;}
th .header {word-break: keep-all; overflow-wrap: normal;}
.field-error {color: var(--error-text-color, #b91c1c); font-size: 0.85em; margin-top: -6px;}
.field-error p {color: var(--error-text-color, #b91c1c);}
.cfg-field {gap: 4px;}
.dataset-table th, .dataset-table th * {word-break: keep-all; overflow-wrap: normal; hyphens: none;}
.dataset-files {font-size: 0.85em;}
.dataset-files code {word-break: break-all;}
#train-problems {color: var(--error-text-color, #b91c1c);}
.studio-progress {margin: 4px 0 8px 0;}
.studio-bar {height: 14px; border-radius: 7px; background: var(--neutral-200, #e5e7eb); overflow: hidden;}
.studio-fill {height: 100%; background: var(--color-accent, #2563eb); transition: width 0.4s;}
.studio-fill.state-completed {background: #16a34a;}
.studio-fill.state-failed {background: #dc2626;}
.studio-fill.state-stopped, .studio-fill.state-stopping {background: #d97706;}
.studio-progress-text {font-size: 0.9em; margin-top: 4px;}
.studio-cards {display: flex; gap: 10px; flex-wrap: wrap;}
.studio-card {border: 1px solid var(--border-color-primary, #e5e7eb); border-radius: 8px; padding: 6px 12px;
              min-width: 110px;}
.studio-card-label {font-size: 0.75em; opacity: 0.7; text-transform: uppercase;}
.studio-card-value {font-size: 1.15em; font-weight: 600;}
.studio-experts table {border-collapse: collapse; font-size: 12px; margin-top: 4px;}
.studio-experts th, .studio-experts td {padding: 3px 6px; text-align: center;
                                        border: 1px solid var(--border-color-primary, #e5e7eb);}
.studio-log {margin-top: 26px; max-height: 360px; overflow-y: auto; display: flex; flex-direction: column-reverse;
             border: 1px solid var(--border-color-primary, #e5e7eb); border-radius: 6px;}
.studio-log pre {margin: 0; padding: 8px; font-size: 12px; line-height: 1.35; white-space: pre-wrap;
                 word-break: break-all;}
""" + MESSAGE_CSS + eval_results.CSS

def build_app(ctx: StudioContext) -> gr.Blocks:
    T = ctx.texts
    with gr.Blocks(title="ERNIE Studio") as demo:
        with gr.Row(elem_id="studio-header"):
            T.make(gr.Markdown, "app-title", scale=5)
            lang = T.make(gr.Radio, "app-lang", choices=[(name, code) for code, name in LANGUAGES.items()],
                          value=DEFAULT_LANG, scale=1, min_width=200, container=False)
        with gr.Tabs(elem_id="studio-tabs") as tabs:
            with T.make(gr.Tab, "tab-data", id="data") as data_tab_ui:
                data = data_tab.build(ctx)
            with T.make(gr.Tab, "tab-train", id="train") as train_tab_ui:
                train = train_tab.build(ctx)
            with T.make(gr.Tab, "tab-jobs", id="jobs") as jobs_tab_ui:
                jobs = jobs_tab.build(ctx)
            with T.make(gr.Tab, "tab-evaluate", id="evaluate") as evaluate_tab_ui:
                evaluate = eval_tab.build(ctx)
            with T.make(gr.Tab, "tab-compare", id="compare") as compare_tab_ui:
                compare = compare_tab.build(ctx)
            with T.make(gr.Tab, "tab-export", id="export") as export_tab_ui:
                export = export_tab.build(ctx)
            with T.make(gr.Tab, "tab-chat", id="chat") as chat_tab_ui:
                chat = chat_tab.build(ctx)

        data_tab.connect(ctx, data, train.form, lang)
        train_tab.connect(ctx, train, lang)
        jobs_tab.connect(ctx, jobs, lang)
        eval_tab.connect(ctx, evaluate, lang)
        compare_tab.connect(ctx, compare, lang)
        export_tab.connect(ctx, export, lang)
        chat_tab.connect(ctx, chat, lang)

        # a completed job's output panel leads to the Chat and Export tabs
        job_output.connect(ctx, jobs.output, jobs.select, jobs.timer, lang, tabs, chat.sides[0].model, export)
        train_tab.connect_start(ctx, train, lang, tabs, jobs.select,
                                lambda lg: jobs_tab.job_choices(ctx.store.list_jobs(refresh=False), lg), jobs.timer)

        def clone(job_id, lang_value):
            try:
                mapping = jobs_tab.load_config(ctx, job_id)
            except (JobError, ValueError, OSError, yaml.YAMLError) as e:
                return {jobs.action_status: said("msg-jobs-failed-action", error=str(e))}
            if is_eval_config(mapping):  # an evaluation is started again from the Evaluate tab
                return {**evaluate.updates(eval_tab.fill(ctx, job_id, mapping, lang_value)),
                        tabs: gr.Tabs(selected="evaluate"), jobs.timer: gr.Timer(active=False),
                        evaluate.timer: gr.Timer(active=True)}
            return {**train_tab.fill_form(ctx, train, mapping, lang_value), tabs: gr.Tabs(selected="train"),
                    jobs.timer: gr.Timer(active=False), train.io_status: said("msg-train-cloned", id=job_id)}

        train_tab.then_preview(ctx, train, lang, jobs.clone.click(
            clone, [jobs.select, lang], [*train.fill_outputs(), tabs, jobs.timer, jobs.action_status,
                                         *evaluate.outputs(eval_tab.Filled), evaluate.timer]))

        def show_dataset(dataset_id, lang_value):
            return data.updates(data_tab.show_dataset(ctx, dataset_id, lang_value))

        def dataset_list(dataset_id, lang_value):
            return data.updates(data_tab.refresh_list(ctx, dataset_id, lang_value))

        def export_choice(job_id):
            return export.updates(export_tab.refresh(ctx, job_id))

        # A language switch relabels every catalogued component and re-renders what handlers wrote.
        # Relabelling several hundred components takes the page seconds: the switch itself shows it is busy.
        switched = lang.change(T.updates, lang, T.components, js=SWITCH_JS, show_progress="minimal",
                               show_progress_on=lang)
        train_tab.then_relabel(ctx, train, lang, switched) \
            .then(show_dataset, [data.select, lang], data.outputs(data_tab.Report)) \
            .then(dataset_list, [data.select, lang], data.outputs(data_tab.Listing))

        data_tab_ui.select(dataset_list, [data.select, lang], data.outputs(data_tab.Listing), show_progress="hidden")
        export_tab_ui.select(export_choice, export.job, export.outputs(export_tab.ExportChoice),
                             show_progress="hidden")
        # the job list and the curves are read anew each time the tab is shown (a running job's so far)
        compare_tab.redraw_on(ctx, compare, lang, compare_tab_ui.select, switched.then)
        eval_tab.redraw_on(ctx, evaluate, lang, evaluate_tab_ui.select, switched.then)

        # The Jobs, Evaluate and Export monitors poll only while their tab is shown. Only a click on a
        # tab fires its select event: the handlers that switch tabs themselves (Start, Clone,
        # webui.job_output) set the timers too.
        def timers(shown: str) -> dict:
            return {jobs.timer: gr.Timer(active=shown == "jobs"), export.timer: gr.Timer(active=shown == "export"),
                    evaluate.timer: gr.Timer(active=shown == "evaluate")}

        for shown, tab_ui in (("data", data_tab_ui), ("train", train_tab_ui), ("jobs", jobs_tab_ui),
                              ("evaluate", evaluate_tab_ui), ("compare", compare_tab_ui), ("export", export_tab_ui),
                              ("chat", chat_tab_ui)):
            tab_ui.select(lambda shown=shown: timers(shown), None, [jobs.timer, export.timer, evaluate.timer],
                          show_progress="hidden")

        def on_load(request: gr.Request):
            accept = (request.headers.get("accept-language", "") if request else "").lower()
            lang_value = "zh" if accept.startswith("zh") else DEFAULT_LANG
            return {lang: lang_value, **dataset_list(None, lang_value), **jobs_tab.on_load(ctx, jobs, lang_value),
                    **export_choice(None)}

        loaded = demo.load(on_load, None, [lang, *data.outputs(data_tab.Listing), *jobs.tick_outputs(),
                                           *export.outputs(export_tab.ExportChoice)], show_progress="hidden") \
            .then(show_dataset, [data.select, lang], data.outputs(data_tab.Report))
        train_tab.then_preview(ctx, train, lang, loaded)
    return demo
