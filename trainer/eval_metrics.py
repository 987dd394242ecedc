"""Text-overlap metrics of an evaluation: exact match, ROUGE-1/2/L and BLEU-4 of a predicted answer
against its reference, and their means over a data set (no paddle).

The scores come from the libraries LLaMA-Factory's `compute_metrics` uses, with its conventions, so
figures compare with theirs: text is segmented into words by jieba (Chinese is split into words;
English is split on spaces and punctuation) and ROUGE-1/2/L are rouge-chinese's F1 over the words
joined by spaces; BLEU-4 is nltk's `sentence_bleu` over characters with
`SmoothingFunction().method3`; ROUGE and BLEU are reported x100 (0-100), exact match as a share
(0-1) of answers equal to the reference; every metric compares both with their surrounding
whitespace stripped.
"""

from __future__ import annotations

import logging
from functools import lru_cache

OVERLAP = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")
METRICS = ("exact_match", *OVERLAP)


@lru_cache(maxsize=1)
def _libraries():
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    # jieba announces building its dictionary on stderr at first use; an evaluation's log is not the place
    jieba.setLogLevel(logging.CRITICAL)
    return jieba, Rouge(), sentence_bleu, SmoothingFunction().method3


def exact_match(prediction: str, reference: str) -> bool:
    return prediction.strip() == reference.strip()


def scores(prediction: str, reference: str) -> dict[str, float]:
    """One answer's scores: exact_match (0 or 1) and ROUGE-1/2/L F1 and BLEU-4 (0-100, 4 decimals)."""
    jieba, rouge, sentence_bleu, smoothing = _libraries()
    # surrounding whitespace (a reply's closing newline) is no more a difference here than for exact match
    prediction, reference = prediction.strip(), reference.strip()
    hypothesis = " ".join(jieba.cut(prediction))
    target = " ".join(jieba.cut(reference))
    if not hypothesis.split() or not target.split():
        # rouge-chinese refuses an empty side; nothing in common is what it means
        overlap = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    else:
        overlap = {name: round(value["f"] * 100, 4) for name, value in rouge.get_scores(hypothesis, target)[0].items()}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=smoothing)
    return {"exact_match": float(exact_match(prediction, reference)), **overlap, "bleu-4": round(float(bleu) * 100, 4)}


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over rows of `scores` (an empty list has none: the caller says why)."""
    return {name: sum(row[name] for row in rows) / len(rows) for name in METRICS} if rows else {}
