"""From the run config's data section to tokenised train and eval sets.

Reads and validates every file (`trainer.data`), checks that its rows suit the method (SFT takes
conversations, DPO preference pairs), mixes the training files by probability, holds out the eval
split, and encodes the examples with the model's chat template (`trainer.data.tokenize`). Also the
batch collators: right padding with -100 labels for SFT, paddleformers' own packing for DPO.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

from trainer.config import ConfigError
from trainer.data.check import image_limits
from trainer.data.tokenize import IGNORE_INDEX, encode_dpo_examples, encode_sft_examples
from trainer.data.validate import load_examples
from trainer.data.vl_encode import encode_vl_sft_examples
from trainer.messages import Message

KIND_FOR_METHOD = {"sft": "sft", "dpo": "preference"}


def _load(entries, skip_invalid: bool, log, method: str, key: str, limits=None):
    loaded = []
    for index, entry in enumerate(entries):
        examples, report = load_examples(entry.path, entry.format, skip_invalid, limits)
        wanted = KIND_FOR_METHOD[method]
        if examples and examples[0].kind != wanted:
            where = f"{key}[{index}]"
            raise ConfigError([(where, Message("data-kind-mismatch", key=where, path=entry.path,
                                               kind=Message(f"kind-{examples[0].kind}"), format=report.format,
                                               method=method, wanted=Message(f"kind-{wanted}")))])
        skipped = f", {report.rows_invalid} invalid rows skipped" if report.rows_invalid else ""
        log(f"data: {entry.path}: format {report.format}, {len(examples)} rows{skipped}")
        loaded.append((entry, examples))
    return loaded


def mix(loaded, seed: int):
    """Mix datasets so each contributes in proportion to its probability (sampled with repetition
    where a small file must be up-sampled); one file is used as it is."""
    if len(loaded) == 1:
        return list(loaded[0][1])
    rng = random.Random(seed)
    total_rows = sum(len(examples) for _, examples in loaded)
    total_prob = sum(entry.probability for entry, _ in loaded)
    mixed = []
    for entry, examples in loaded:
        want = max(1, round(total_rows * entry.probability / total_prob))
        picks = list(examples) * (want // len(examples)) + rng.sample(list(examples), want % len(examples))
        mixed.extend(picks)
    rng.shuffle(mixed)
    return mixed


def split_examples(cfg, log=print):
    """(train_examples, eval_examples) of the run: the training files mixed, and the eval files or,
    without them, the `eval_split` held out of the mix (the same rows on every call)."""
    data = cfg.data
    limits = image_limits(cfg.vl)
    train_examples = mix(_load(data.train, data.skip_invalid, log, cfg.method, "data.train", limits), cfg.optim.seed)
    eval_examples = [ex for _, exs in _load(data.eval, data.skip_invalid, log, cfg.method, "data.eval", limits)
                     for ex in exs]
    if not eval_examples and data.eval_split > 0:
        rng = random.Random(cfg.optim.seed)
        shuffled = train_examples[:]
        rng.shuffle(shuffled)
        held_out = max(1, int(len(shuffled) * data.eval_split))
        eval_examples, train_examples = shuffled[:held_out], shuffled[held_out:]
    return train_examples, eval_examples


def build_datasets(cfg, tokenizer, log=print, processor=None):
    """(train_features, eval_features) for the run's method; eval_features may be empty. With an
    image `processor` (a VL model's), SFT rows are encoded with their images."""
    data = cfg.data
    train_examples, eval_examples = split_examples(cfg, log)

    def encode(examples, what):
        if cfg.method == "dpo":
            return encode_dpo_examples(tokenizer, examples, data.max_seq_len, data.max_prompt_len,
                                       data.truncation, what=what)
        if processor is not None:
            return encode_vl_sft_examples(tokenizer, processor, examples, data.max_seq_len, data.truncation,
                                          what=what)
        return encode_sft_examples(tokenizer, examples, data.max_seq_len, data.truncation, what=what)

    train, report = encode(train_examples, "data.train")
    unit = "preference pairs" if cfg.method == "dpo" else "training sequences"
    log(f"data: {report.encoded} {unit}, {report.tokens} tokens; "
        f"{report.truncated} truncated, {report.skipped} skipped (policy {data.truncation}, "
        f"max_seq_len {data.max_seq_len})")
    evaluation = []
    if eval_examples:
        evaluation, eval_report = encode(eval_examples, "data.eval")
        log(f"data: {eval_report.encoded} evaluation sequences")
    return train, evaluation


class FeatureDataset:
    """A map-style dataset over a list of feature dicts (what paddle's DataLoader needs)."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def __getitem__(self, index):
        return self.features[index]


class Collator:
    """Pads a batch on the right; labels of padding are -100. `with_lengths` adds each sequence's
    unpadded length (for the token-balanced loss)."""

    def __init__(self, pad_id: int, with_lengths: bool = False):
        self.pad_id = pad_id
        self.with_lengths = with_lengths

    def __call__(self, batch):
        import paddle

        width = max(len(item["input_ids"]) for item in batch)
        input_ids = np.full([len(batch), width], self.pad_id, dtype="int64")
        labels = np.full([len(batch), width], IGNORE_INDEX, dtype="int64")
        for row, item in enumerate(batch):
            input_ids[row, : len(item["input_ids"])] = item["input_ids"]
            labels[row, : len(item["labels"])] = item["labels"]
        batch_out = {"input_ids": paddle.to_tensor(input_ids), "labels": paddle.to_tensor(labels)}
        if self.with_lengths:
            batch_out["sequence_lengths"] = paddle.to_tensor([len(item["input_ids"]) for item in batch], dtype="int64")
        return batch_out


class PreferenceCollator:
    """Batches packed preference sequences with paddleformers' `dpo_collate_fn` (dense attention
    masks, response indices as its DPO loss expects them) and hands paddle tensors on."""

    def __init__(self, tokenizer, use_filtered_label_loss: bool):
        self.tokenizer = tokenizer
        self.filtered = use_filtered_label_loss
        # What dpo_collate_fn reads of its workflow's arguments: padding multiples for parallelism
        # and fp8, none of which a studio run uses.
        self.padding_args = SimpleNamespace(context_parallel_size=1, tensor_model_parallel_size=1,
                                            sequence_parallel=False, fp8=False)

    def _sequence(self, features):
        from paddleformers.datasets.DPODataset import Sequence

        p, c, r = features.prompt_len, features.chosen_len, features.rejected_len
        start = 0 if self.filtered else p - 1
        return Sequence(token_ids=features.input_ids, position_ids=features.position_ids,
                        attention_mask=features.attention_mask(), attn_mask_startend_row_indices=None,
                        response_labels=features.response_labels, response_index=[start, start + c, start + c + r],
                        score_delta=0.0, has_mm=[False])

    def __call__(self, batch):
        import paddle
        from paddleformers.datasets.collate import dpo_collate_fn

        arrays = dpo_collate_fn([[self._sequence(f)] for f in batch], self.tokenizer, self.padding_args,
                                use_filtered_label_loss=self.filtered)
        return {key: paddle.to_tensor(value) for key, value in arrays.items()}
