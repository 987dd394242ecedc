"""From the run config's data section to tokenised train and eval sets.

Reads and validates every file (`trainer.data`), mixes the training files by probability, holds
out the eval split, and encodes the examples with the model's chat template
(`trainer.data.tokenize`). Also the batch collator: right padding, -100 labels on padding.
"""

from __future__ import annotations

import random

import numpy as np

from trainer.data.tokenize import IGNORE_INDEX, encode_sft_examples
from trainer.data.validate import load_examples


def _load(entries, skip_invalid: bool, log):
    loaded = []
    for entry in entries:
        examples, report = load_examples(entry.path, entry.format, skip_invalid)
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


def build_sft_datasets(cfg, tokenizer, log=print):
    """(train_features, eval_features) for an SFT run; eval_features may be empty."""
    data = cfg.data
    train_examples = mix(_load(data.train, data.skip_invalid, log), cfg.optim.seed)
    eval_examples = [ex for _, exs in _load(data.eval, data.skip_invalid, log) for ex in exs]
    if not eval_examples and data.eval_split > 0:
        rng = random.Random(cfg.optim.seed)
        shuffled = train_examples[:]
        rng.shuffle(shuffled)
        held_out = max(1, int(len(shuffled) * data.eval_split))
        eval_examples, train_examples = shuffled[:held_out], shuffled[held_out:]
    train, report = encode_sft_examples(tokenizer, train_examples, data.max_seq_len, data.truncation)
    log(f"data: {report.encoded} training sequences, {report.tokens} tokens; "
        f"{report.truncated} truncated, {report.skipped} skipped (policy {data.truncation}, "
        f"max_seq_len {data.max_seq_len})")
    evaluation = []
    if eval_examples:
        evaluation, eval_report = encode_sft_examples(
            tokenizer, eval_examples, data.max_seq_len, data.truncation, what="data.eval")
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
    """Pads a batch on the right; labels of padding are -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch):
        import paddle

        width = max(len(item["input_ids"]) for item in batch)
        input_ids = np.full([len(batch), width], self.pad_id, dtype="int64")
        labels = np.full([len(batch), width], IGNORE_INDEX, dtype="int64")
        for row, item in enumerate(batch):
            input_ids[row, : len(item["input_ids"])] = item["input_ids"]
            labels[row, : len(item["labels"])] = item["labels"]
        return {"input_ids": paddle.to_tensor(input_ids), "labels": paddle.to_tensor(labels)}
