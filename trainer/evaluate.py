"""`python -m trainer eval`: one or more checkpoints answering a data set, scored against its
references; owns the evaluation directory (paddle only inside the functions that load and decode).

What is evaluated: an eval config (trainer/eval_jobs.py), from `trainer eval`'s options, its
`--config` file, an evaluation job of the queue, or a training run's `eval.after_training`.

Rows: any supported format (trainer/data/formats.py), or a job directory for the rows that job
evaluated on (its data.eval, else its data.eval_split held out). An SFT row's last assistant turn is its
reference and the conversation before it the prompt; a preference row's prompt and chosen reply;
a prompt-only row (an SFT format's conversation ending with the user's turn, an alpaca row without
`output`) is answered without a reference. Rows with images are left out and counted: the answers
are decoded in batches, which take text only.

Each checkpoint in turn (one in memory at a time) is loaded through `ChatEngine.load` (a built-in
name, a hub repo id, a checkpoint or export directory, a LoRA adapter, a job directory for its
output), answers every prompt greedily with `models.batch_generate` (`--batch-size` rows decoding
together), prompts over the context losing their oldest turns (`truncation="auto"`; one still too
long is skipped, its reason written), and then scores the perplexity of the references as training
weighs them (`trainer/data/tokenize.encode_sft`, only the reference learned). A checkpoint that fails
is named with its error and the next one evaluated.

The directory (`EvalPaths`):
- `config.yaml`: the eval config (an evaluation job's own);
- `predictions.jsonl`: one line per (row, checkpoint) as each answer ends, appended in one write,
  so a stopped evaluation leaves whole lines: index and line of the row, model, prompt (messages),
  reference (null without one), answer, reasoning, finish_reason, completion_tokens,
  dropped_messages, scores (trainer/eval_metrics; null without a reference), or `skipped` (why);
- `metrics.json`: rewritten after each checkpoint: per model its counts, the means of
  `eval_metrics.METRICS`, `perplexity`, and `not_computed` (metric -> why), or `error`;
- `status.json` (trainer/jobfiles): state, answers done and due as `step`/`total_steps` (`unit:
  answers`, so the job list shows them as a run's steps), eta_s, the model under way, failed_models;
  SIGTERM, SIGINT or the job's STOP file stops between decoding steps and writes `stopped`;
- `eval.log`: what the CLI printed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import yaml

from plumbing.files import append_json_line, atomic_write_json, atomic_write_text
from trainer.eval_jobs import EvalError, after_training_dir, eval_config
from trainer.eval_metrics import METRICS, mean_scores, scores
from trainer.jobfiles import COMPLETED, FAILED, RUNNING, STOPPED, stop_requested, write_status

STATUS_EVERY_S = 1.0  # status.json is rewritten (fsync, lock) at most this often while answers come
STOP_FILE_EVERY_S = 0.5  # how often the STOP file is looked for while decoding


class EvalPaths:
    """Names of the files in one evaluation directory."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.config = self.dir / "config.yaml"
        self.predictions = self.dir / "predictions.jsonl"
        self.metrics = self.dir / "metrics.json"
        self.status = self.dir / "status.json"
        self.log = self.dir / "eval.log"


@dataclass
class EvalRow:
    index: int
    line: int
    source: str
    prompt: list  # trainer.data.rows.Turn, the conversation the model answers
    reply: object = None  # the reference reply as a trainer.data.rows.Turn (its calls as calls), or None
    tools: tuple = ()  # the functions the row declares, listed in the prompt as training lists them

    @property
    def reference(self) -> str | None:
        """The reference reply's text, its tool calls as the studio's layout writes them."""
        return None if self.reply is None else self.reply.text

    @property
    def messages(self) -> list[dict]:
        return [turn.to_message() for turn in self.prompt]

    def scored_example(self):
        """The row as a training example whose only learned tokens are the reference's."""
        from trainer.data.rows import Example

        turns = [replace(turn, train=False) for turn in self.prompt]
        return Example([*turns, replace(self.reply, train=True)], line=self.line, source=self.source,
                       tools=self.tools)


def is_job_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "config.yaml").is_file() and (path / "status.json").is_file()


def _file_examples(path: str, format: str) -> tuple[str, list]:
    from trainer.data.formats import open_records, try_convert
    from trainer.data.images import ImageContext
    from trainer.data.readers import DataError

    # the readers refuse a file without rows (empty, `[]`, a CSV header alone) naming what it holds
    name, records = open_records(path, format)
    images = ImageContext.for_file(path)
    examples = []
    for line, row in records:
        example, issues = try_convert(row, name, path, line, images)
        if example is None:
            example, _ = try_convert(row, name, path, line, images, prompt_only=True)
        if example is None:
            raise DataError(issues)  # the row's problems as a full row, not as a prompt
        examples.append(example)
    return name, examples


def _job_examples(job_dir: str) -> tuple[str, list]:
    """The rows a training job evaluated on: its data.eval files, else its held-out data.eval_split."""
    from trainer.config import from_dict
    from trainer.datasets import split_examples
    from trainer.jobfiles import JobPaths

    cfg = from_dict(JobPaths(job_dir).read_config(), local=False)
    _, examples = split_examples(cfg, log=lambda _text: None)
    if not examples:
        raise EvalError(f"{job_dir}: the job has no evaluation rows (it has no data.eval and data.eval_split is 0)")
    return "job", examples


def read_rows(path: str | os.PathLike, format: str = "auto") -> tuple[str, list[EvalRow], int]:
    """(format, the rows to evaluate, rows left out for their images) of a data file or a job
    directory; a row no format reading accepts raises DataError naming its file, line and field."""
    from trainer.data.rows import Turn

    path = os.fspath(path)
    name, examples = _job_examples(path) if is_job_dir(path) else _file_examples(path, format)
    rows, with_images = [], 0
    for example in examples:
        if example.images:
            with_images += 1
            continue
        if example.chosen is not None:
            prompt, reply = list(example.messages), Turn("assistant", example.chosen)
        elif example.messages[-1].role == "assistant":
            prompt, reply = list(example.messages[:-1]), example.messages[-1]
        else:
            prompt, reply = list(example.messages), None
        rows.append(EvalRow(len(rows), example.line, example.source or path, prompt, reply, example.tools))
    if not rows:
        raise EvalError(f"{path}: every one of its {with_images} rows has images; the evaluation answers text rows only")
    return name, rows, with_images


def checkpoint_of(model: str) -> str:
    """What `ChatEngine.load` takes for `model`: a job directory stands for its output."""
    path = Path(model).expanduser()
    if (path / "config.yaml").is_file() and (path / "output").is_dir():
        return str(path / "output")
    return model


class StopFlag:
    """Set by a signal, or by the job's STOP file (looked for at most every STOP_FILE_EVERY_S)."""

    def __init__(self, job_dir: Path):
        self.job_dir, self.event, self.looked = job_dir, threading.Event(), 0.0

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self.event.is_set() and now - self.looked >= STOP_FILE_EVERY_S:
            self.looked = now
            if stop_requested(self.job_dir):
                self.event.set()
        return self.event.is_set()


class Progress:
    """Answers done and due (`step`/`total_steps`) and the ETA in status.json, rewritten at most
    every STATUS_EVERY_S."""

    def __init__(self, out_dir: Path, total: int):
        self.out_dir, self.total, self.done = out_dir, total, 0
        self.started = time.time()
        self.written = 0.0

    def advance(self, count: int = 1, **fields) -> None:
        self.done += count
        now = time.time()
        if fields or now - self.written >= STATUS_EVERY_S or self.done == self.total:
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if self.done else None
            write_status(self.out_dir, step=self.done, total_steps=self.total, eta_s=eta, **fields)
            self.written = now


def predict(engine, rows: list[EvalRow], model: str, max_new_tokens: int, batch_size: int,
            stop: StopFlag, write: Callable[[dict], None]) -> dict:
    """Answer every row greedily, `write` each prediction as it ends; the counts."""
    from models.batch_generate import stream_batch
    from models.chat_engine import ContextLengthError
    from models.chat_request import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=max_new_tokens)
    counts = {"rows": len(rows), "answered": 0, "prompts_truncated": 0, "prompts_skipped": 0}
    prompts, fitted = [], []
    for row in rows:
        base = {"index": row.index, "line": row.line, "model": model, "prompt": row.messages,
                "reference": row.reference}
        try:
            prompt = engine.prepare(row.messages, max_new_tokens, truncation="auto", tools=list(row.tools))
        except ContextLengthError as exc:
            counts["prompts_skipped"] += 1
            write({**base, "answer": None, "skipped": str(exc)})
            continue
        counts["prompts_truncated"] += int(prompt.dropped_messages > 0)
        prompts.append(prompt)
        fitted.append(base)
    reasoning = [[] for _ in prompts]
    content = [[] for _ in prompts]
    events = stream_batch(engine, prompts, [params] * len(prompts), [stop.is_set] * len(prompts), batch_size)
    for i, chunk in events:
        if stop.is_set():
            break
        reasoning[i].append(chunk.reasoning)
        content[i].append(chunk.content)
        if chunk.finish_reason is None:
            continue
        answer, reference = "".join(content[i]), fitted[i]["reference"]
        write({**fitted[i], "answer": answer, "reasoning": "".join(reasoning[i]),
               "finish_reason": chunk.finish_reason, "completion_tokens": chunk.completion_tokens,
               "dropped_messages": prompts[i].dropped_messages,
               "scores": scores(answer, reference) if reference is not None else None})
        counts["answered"] += 1
    events.close()
    return counts


def reference_perplexity(engine, rows: list[EvalRow]) -> tuple[float | None, str | None, dict]:
    """(perplexity of the references given their prompts, or None and why not, the counts)."""
    from trainer.data.tokenize import TokenizationError, encode_sft_examples
    from trainer.quant_report import perplexity

    examples = [row.scored_example() for row in rows if row.reference is not None]
    if not examples:
        return None, "no row has a reference", {}
    try:
        # the context length bounds the row as training's max_seq_len would, with its default policy
        features, report = encode_sft_examples(engine.tokenizer, examples, engine.context_length,
                                               "drop_oldest_turns", what="the references")
    except TokenizationError as exc:
        return None, str(exc), {}
    counts = {"perplexity_rows": report.encoded, "perplexity_truncated": report.truncated,
              "perplexity_skipped": report.skipped}
    return perplexity(engine.model, features), None, counts


def model_metrics(lines: list[dict], ppl: float | None, ppl_reason: str | None) -> dict:
    """The figures of one checkpoint from its prediction lines and reference perplexity."""
    scored = [line["scores"] for line in lines if line.get("scores") is not None]
    means = mean_scores(scored)
    with_reference = sum(line["reference"] is not None for line in lines)
    if not with_reference:
        why = "the data set has no references (prompt-only rows): only predictions are written"
    elif not scored:
        why = "no row with a reference was answered (see the skipped prompts)"
    else:
        why = None
    not_computed = {name: why for name in METRICS if why}
    if ppl is None:
        not_computed["perplexity"] = ppl_reason
    return {**{name: means.get(name) for name in METRICS}, "perplexity": ppl, "not_computed": not_computed,
            "with_reference": with_reference, "scored": len(scored)}


def run_eval(config: dict, read: tuple[str, list[EvalRow], int], out_dir: Path,
             log: Callable[[str], None] = print) -> int:
    """Evaluate the checked eval `config` (trainer/eval_jobs.py) on the rows `read_rows` gave into
    `out_dir` (checked by the caller: new, empty, or the evaluation job's own directory); exit status
    0 when at least one checkpoint was evaluated or the run was stopped, else 1."""
    # importing paddleformers sets SIGTERM back to its default action: ours must come after
    import paddle
    import paddleformers  # noqa: F401

    paths = EvalPaths(out_dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    stop = StopFlag(paths.dir)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    paddle.set_device(config["devices"]["device"])
    models, max_new_tokens, batch_size = config["models"], config["max_new_tokens"], config["batch_size"]
    fmt, rows, with_images = read
    if not paths.config.exists():  # an evaluation job's directory holds its config already
        atomic_write_text(paths.config, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    progress = Progress(paths.dir, len(rows) * len(models))
    write_status(paths.dir, state=RUNNING, started=progress.started, step=0, total_steps=progress.total,
                 unit="answers", failed_models=[], error=None, ended=None)
    log(f"[eval] {len(rows)} rows of {config['data']} ({fmt})"
        + (f"; {with_images} rows with images left out" if with_images else ""))
    results = {"data": config["data"], "format": fmt, "rows": len(rows), "rows_with_images_left_out": with_images,
               "labels": config["labels"], "models": {}}
    failed = []
    try:
        for model in models:
            if stop.is_set():
                break
            results["models"][model] = evaluate_model(model, rows, max_new_tokens, batch_size, stop, paths,
                                                      progress, log)
            if "error" in results["models"][model]:
                failed.append(model)
                progress.advance(len(rows) - results["models"][model].pop("answers_written"), failed_models=failed)
            atomic_write_json(paths.metrics, results)
    except BaseException as exc:
        write_status(paths.dir, state=FAILED, ended=time.time(), error=f"{exc.__class__.__name__}: {exc}")
        raise
    if stop.is_set():
        write_status(paths.dir, state=STOPPED, ended=time.time(), step=progress.done, eta_s=None)
        log(f"[eval] stopped after {progress.done} of {progress.total} answers; {paths.predictions} holds them")
        return 0
    if len(failed) == len(models):
        write_status(paths.dir, state=FAILED, ended=time.time(), error="no checkpoint could be evaluated: "
                     + "; ".join(f"{name}: {results['models'][name]['error']}" for name in failed))
        return 1
    write_status(paths.dir, state=COMPLETED, ended=time.time(), step=progress.total, eta_s=0)
    log(f"[eval] metrics written to {paths.metrics}")
    return 0


def evaluate_model(model: str, rows: list[EvalRow], max_new_tokens: int, batch_size: int, stop: StopFlag,
                   paths: EvalPaths, progress: Progress, log: Callable[[str], None]) -> dict:
    """One checkpoint's entry of metrics.json; a failure gives `error` (and how many answers it
    had written, for the progress) instead of figures."""
    from models.chat_engine import ChatEngine

    lines = []

    def write(line: dict) -> None:
        append_json_line(paths.predictions, line)
        lines.append(line)
        progress.advance()

    write_status(paths.dir, model=model)
    log(f"[eval] {model}: loading {checkpoint_of(model)}")
    try:
        engine = ChatEngine.load(checkpoint_of(model), name=model)
        counts = predict(engine, rows, model, max_new_tokens, batch_size, stop, write)
        if stop.is_set():
            return {**counts, **model_metrics(lines, None, "stopped before it was measured")}
        ppl, reason, ppl_counts = reference_perplexity(engine, rows)
    except Exception as exc:  # loading or decoding a checkpoint fails in many ways; the others still run
        log(f"[eval] {model}: failed: {exc.__class__.__name__}: {exc}")
        return {"error": f"{exc.__class__.__name__}: {exc}", "answers_written": len(lines)}
    figures = {**counts, **ppl_counts, **model_metrics(lines, ppl, reason)}
    shown = ", ".join(f"{name} {figures[name]:.4g}" for name in (*METRICS, "perplexity") if figures[name] is not None)
    log(f"[eval] {model}: {shown or 'predictions only'}")
    return figures


def after_training(cfg, job_dir: Path, out_dir: Path, log: Callable[[str], None]) -> None:
    """A training run's `eval.after_training`: the base model and the tuned one answer the run's
    evaluation rows into JOB/eval. Its failure is its own (JOB/eval/status.json), not the run's: the
    training's output is written and stays good."""
    import gc

    from trainer.data.readers import DataError

    gc.collect()  # the training's model and optimizer are gone; their memory is wanted back first
    base, tuned = cfg.model.name_or_path, str(out_dir)
    config = eval_config([base, tuned], str(job_dir), max_new_tokens=cfg.eval.max_new_tokens,
                         labels={base: "base", tuned: "tuned"}, device=cfg.devices.device)
    eval_dir = after_training_dir(job_dir)
    log(f"[eval] evaluating the base model and the tuned one into {eval_dir}")
    try:
        read = read_rows(job_dir)
    except (DataError, EvalError) as exc:
        eval_dir.mkdir(exist_ok=True)
        write_status(eval_dir, state=FAILED, ended=time.time(), error=f"data: {exc}")
        log(f"[eval] not evaluated: {exc}")
        return
    try:
        run_eval(config, read, eval_dir, log)
    except Exception as exc:  # already in JOB/eval/status.json; the job itself completed
        log(f"[eval] failed: {exc.__class__.__name__}: {exc}")
