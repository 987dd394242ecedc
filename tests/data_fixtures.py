"""Small helpers and sample rows shared by the dataset tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

SAMPLES = {
    "erniekit": {"src": ["Hi", "And 2+2?"], "tgt": ["Hello!", "4"], "label": [0, 1], "system": "Be brief."},
    "erniekit_dpo": {"src": ["Hi", "2+2?"], "tgt": ["Hello!"], "response": [["5"], ["4"]], "sort": [0, 1]},
    "alpaca": {"instruction": "Translate", "input": "bonjour", "output": "hello",
               "history": [["Who are you?", "A translator."]]},
    "alpaca_dpo": {"instruction": "2+2?", "input": "", "chosen": "4", "rejected": "5"},
    "messages": {"messages": [{"role": "system", "content": "Think first."},
                              {"role": "user", "content": "2+2?"},
                              {"role": "assistant", "content": "<think>2 and 2</think>4"}]},
    "messages_dpo": {"messages": [{"role": "user", "content": "2+2?"}],
                     "chosen": {"role": "assistant", "content": "4"}, "rejected": "5"},
    "chatml_dpo": {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "2+2?"}],
                   "chosen_response": [{"role": "assistant", "content": "4"}],
                   "rejected_response": [{"role": "assistant", "content": "5"}]},
    "trl_dpo": {"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
                                   {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye!"}],
                 "system": "Be kind."},
    "sharegpt_dpo": {"conversations": [{"from": "human", "value": "2+2?"}],
                     "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}},
    # a text-only row of ERNIEKit's vision-language format (rows with images: tests/test_vl_data.py)
    "erniekit_vl": {"text_info": [{"text": "Hi", "tag": "mask"}, {"text": "Hello", "tag": "no_mask"},
                                  {"text": "Bye", "tag": "mask"}, {"text": "Bye!", "tag": "no_mask"}],
                    "system": "Be kind."},
}


def write_jsonl(path: Path, rows, *, raw_lines: dict[int, str] | None = None) -> Path:
    """Rows as JSON Lines; `raw_lines` replaces given 1-based lines with raw text."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    for number, text in (raw_lines or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, value, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=indent), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([json.dumps(c, ensure_ascii=False) if isinstance(c, (list, dict)) else c for c in row])
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
