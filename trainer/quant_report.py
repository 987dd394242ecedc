"""The quality cost of a quantized export, measured on the job's own data (`trainer export
--quantize W --report`, and every quantized export the Export tab makes): perplexity of the
full-precision model and of each width asked for, the share of greedy answers identical to full
precision's, weight bytes, and the memory a fresh process takes to load each written checkpoint.
trainer.quant_export writes the result into the export as quant_report.json; trainer.export_facts
reads it back as a table (docs/quant.md).

The rows: the job's evaluation files, else the rows it held out (`data.eval_split`), else a fixed
sample of its training rows (said so: the model has seen them). A VL model's rows are measured with
their images; a text model leaves rows with images out and counts them. A preference job's rows
are measured with their chosen replies.

`python -m trainer.quant_report load-memory CHECKPOINT` is the fresh process that measures loading.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from dataclasses import dataclass, field

from plumbing.paths import REPO_ROOT

SAMPLE_ROWS = 32
SAMPLE_SEED = 0
MAX_NEW_TOKENS = 32
FULL = "full"  # the results' name for the full-precision model


class ReportError(ValueError):
    """The report cannot be made, and why."""


@dataclass
class Sample:
    source: str  # eval | split | train
    rows: list[dict]  # encoded as for training (a VL model's with its images)
    # each row's conversation up to its first reply, and the images of that part
    prompts: list[tuple[list[dict], list[str]]] = field(default_factory=list)
    images_skipped: int = 0


def _as_reply(example):
    """A preference row as an SFT row ending in its chosen reply."""
    from trainer.data.rows import Example, Turn

    if example.chosen is None:
        return example
    return Example([*example.messages, Turn("assistant", example.chosen)], line=example.line, source=example.source,
                   images=example.images)


def prompt_of(example) -> tuple[list[dict], list[str]]:
    """The row's turns before its first reply, and the images their placeholders stand for."""
    from models.image_facts import IMAGE_PLACEHOLDER
    from trainer.data.tokenize import conversation_of

    messages, _ = conversation_of(example)
    first = next(i for i, message in enumerate(messages) if message["role"] == "assistant")
    images = sum(str(message["content"]).count(IMAGE_PLACEHOLDER) for message in messages[:first])
    return messages[:first], list(example.images[:images])


def build_sample(cfg, tokenizer, processor=None) -> Sample:
    """The rows the report measures, encoded with the job's chat template and limits; rows with
    images are left out unless a VL model's image `processor` is given."""
    from trainer.config import ConfigError
    from trainer.data.readers import DataError
    from trainer.data.tokenize import TokenizationError, encode_sft_examples
    from trainer.data.vl_encode import encode_vl_sft_examples
    from trainer.datasets import split_examples

    try:
        train, evaluation = split_examples(cfg, log=lambda *_: None)
    except (ConfigError, DataError, OSError) as exc:
        raise ReportError(f"the report reads the job's data, which cannot be read now: {exc}") from exc
    source = ("eval" if cfg.data.eval else "split") if evaluation else "train"
    examples = [_as_reply(example) for example in (evaluation or train)]
    usable = examples if processor is not None else [example for example in examples if not example.images]
    if not usable:
        raise ReportError(f"every {'evaluation' if evaluation else 'training'} row of the job has images, and a "
                          "text model's report measures text rows only")
    if len(usable) > SAMPLE_ROWS:
        usable = random.Random(SAMPLE_SEED).sample(usable, SAMPLE_ROWS)
    what = f"the report's rows ({source})"
    try:
        if processor is not None:
            rows, _ = encode_vl_sft_examples(tokenizer, processor, usable, cfg.data.max_seq_len, cfg.data.truncation,
                                             what=what)
        else:
            rows, _ = encode_sft_examples(tokenizer, usable, cfg.data.max_seq_len, cfg.data.truncation, what=what)
    except TokenizationError as exc:
        raise ReportError(str(exc)) from exc
    skipped = 0 if processor is not None else sum(1 for example in examples if example.images)
    return Sample(source, rows, [prompt_of(example) for example in usable], skipped)


def perplexity(model, rows: list[dict]) -> float:
    """exp of the mean negative log-likelihood of the rows' learned tokens, one row at a time (a VL
    row with its token types, 3-D positions and images, as training batches it)."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from trainer.vision import VisionCollator, model_inputs

    single = VisionCollator(pad_id=0)  # one row a batch: nothing is padded
    total, count = 0.0, 0
    with paddle.no_grad():
        for row in rows:
            if "token_type_ids" in row:
                out = model(**model_inputs(single([row])), return_dict=True)
            else:
                out = model(paddle.to_tensor([row["input_ids"]], dtype="int64"), use_cache=False, return_dict=True)
            labels = np.asarray(row["labels"])
            learned = np.nonzero(labels != -100)[0]
            log_probs = F.log_softmax(out.logits[0].astype("float32"), axis=-1).numpy()
            total -= float(log_probs[learned, labels[learned]].sum())
            count += len(learned)
    return math.exp(total / count)


def greedy_answers(engine, prompts: list[tuple[list[dict], list[str]]]) -> list[list[int]]:
    """Each prompt's greedy continuation by a ChatEngine, as chat would prompt it (its template's
    generation prompt, its images), up to MAX_NEW_TOKENS, without the end-of-turn token."""
    from models.chat_request import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS)
    answers = []
    for messages, images in prompts:
        prompt = engine.prepare(messages, MAX_NEW_TOKENS, truncation="auto", images=images)
        answer = []
        for token in engine.generate_ids(prompt.ids, params, MAX_NEW_TOKENS, vision=prompt.vision):
            if token in engine.stop_ids:
                break
            answer.append(token)
        answers.append(answer)
    return answers


def _measured(engine, sample: Sample, log) -> tuple[dict, list[list[int]]]:
    from models.quant import weight_bytes

    ppl = perplexity(engine.model, sample.rows)
    answers = greedy_answers(engine, sample.prompts)
    log(f"[report] perplexity {ppl:.4f}")
    return {"perplexity": ppl, "weight_bytes": weight_bytes(engine.model)}, answers


def measure(model, tokenizer, sample: Sample, spec, widths: list[str], processor=None, log=print) -> dict:
    """The report of `model` (full precision) against each of `widths` at `spec`'s group size (a VL
    model's image `processor` given). Each width quantizes the model in place and the original
    layers are put back before the next; `spec.width` comes last and stays: the model is left
    quantized as `spec`."""
    from models.chat_engine import ChatEngine
    from models.quant import eligible_layers, quantize_model, set_sublayer
    from models.quant_spec import QuantSpec

    engine = ChatEngine(model, tokenizer, image_processor=processor)
    log(f"[report] full precision on {len(sample.rows)} rows ({sample.source})")
    full, full_answers = _measured(engine, sample, log)
    results = [{"width": FULL, **full}]
    answers = {FULL: full_answers}
    order = [width for width in dict.fromkeys(widths) if width != spec.width] + [spec.width]
    for width in order:
        originals = eligible_layers(model)
        summary = quantize_model(model, QuantSpec(width, spec.group_size))
        log(f"[report] {width}")
        result, answers[width] = _measured(engine, sample, log)
        same = sum(a == b for a, b in zip(answers[width], full_answers))
        results.append({"width": width, **result, "perplexity_change": result["perplexity"] / full["perplexity"] - 1,
                        "same_answers": same, "same_share": same / len(full_answers),
                        "layers": summary.to_dict()["layers"]})
        if width != spec.width:
            for name, layer in originals:
                set_sublayer(model, name, layer)
    return {
        "width": spec.width, "group_size": spec.group_size, "results": results,
        "sample": {"source": sample.source, "rows": len(sample.rows), "images_skipped": sample.images_skipped,
                   "seed": SAMPLE_SEED, "max_new_tokens": MAX_NEW_TOKENS,
                   "tokens": sum(sum(label != -100 for label in row["labels"]) for row in sample.rows)},
        "answers": [{"messages": messages, "images": images,
                     "ids": {name: ids[index] for name, ids in answers.items()},
                     "text": {name: tokenizer.decode(ids[index]) for name, ids in answers.items()}}
                    for index, (messages, images) in enumerate(sample.prompts)],
    }


def load_memory(checkpoint) -> dict:
    """The memory of loading `checkpoint` (a directory `models.loader.load_checkpoint` takes) in a
    fresh process: the growth of its peak resident memory over what it held before loading (paddle
    already imported), and that peak."""
    argv = [sys.executable, "-m", "trainer.quant_report", "load-memory", str(checkpoint)]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise ReportError(f"loading {checkpoint} in a fresh process failed (exit {done.returncode}): "
                          f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(lines[-1])


def _probe(checkpoint: str) -> dict:
    import paddle  # noqa: F401  (imported before the baseline, so only the loading counts)
    import paddleformers.transformers  # noqa: F401

    from models.loader import load_checkpoint

    from plumbing.peak_memory import resident_kib, reset_own_peak

    before = resident_kib()["VmRSS"] * 1024
    reset_own_peak()  # the peak from here: the imports' peak may otherwise hide a smaller load
    load_checkpoint(checkpoint)
    peak = resident_kib()["VmHWM"] * 1024
    return {"before_bytes": before, "peak_bytes": peak, "increase_bytes": max(0, peak - before)}


if __name__ == "__main__":
    if sys.argv[1:2] != ["load-memory"] or len(sys.argv) != 3:
        print("usage: python -m trainer.quant_report load-memory CHECKPOINT", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_probe(sys.argv[2])))
