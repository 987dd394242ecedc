"""A synthetic image question-answering set whose answers are only in the images: shapes in four
colours on a white square, and a conversation about each image asking the shapes' colour and, by
kind of picture, their shape, how many there are or which side one is on. Rendered with PIL from a fixed seed, so the same call writes the same files.

`write_shapes_dataset(folder, rows, seed)` writes `folder/shapes.jsonl` (the `messages` + `images`
format, `<image>` placeholders) and `folder/images/*.png`; `zip_dataset` packs such a folder into
one zip for upload. The VL example (examples/tiny_vl_sft_lora.yaml), its learning test and the
browser test use it.
"""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

from plumbing.files import atomic_write_text

SIZE = 112
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
COUNTS = ("one", "two", "three")
SIDES = ("left", "right")
QUESTIONS = {
    "colour": ("What colour is the shape?", tuple(COLOURS)),
    "shape": ("What shape is it?", SHAPES),
    "count": ("How many shapes are there?", COUNTS),
    "side": ("Which side is the shape on?", SIDES),
}


CELL = 28  # pixels per image token (14-pixel patches merged 2x2): shapes are laid out on this grid


def _draw_shape(pen, shape: str, fill, x: float, y: float, radius: float) -> None:
    box = [x - radius, y - radius, x + radius, y + radius]
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], fill=fill)


def sample(rng: random.Random) -> tuple[object, list[tuple[str, str]]]:
    """(image, [(question, answer), ...]) of one of three kinds of picture, laid out on the image's
    token grid so that what is asked shows in which tokens hold colour: one large shape (asked its
    shape and colour), one to three squares filling separate cells (how many, and their colour), or
    one shape in the left or right half (which side, and its colour). The questions come in random
    order, so each is sometimes the first of its conversation."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    colour = rng.choice(tuple(COLOURS))
    fill = COLOURS[colour]
    kind = rng.choice(("shape", "count", "side"))
    answers = {"colour": colour}
    if kind == "shape":
        shape = rng.choice(SHAPES)
        _draw_shape(pen, shape, fill, SIZE / 2 + rng.randint(-4, 4), SIZE / 2 + rng.randint(-4, 4), rng.randint(40, 48))
        answers["shape"] = shape
    elif kind == "count":
        cells = rng.sample([(column, row) for column in range(SIZE // CELL) for row in range(SIZE // CELL)],
                           rng.randint(1, 3))
        for column, row in cells:
            _draw_shape(pen, "square", fill, CELL * column + CELL / 2, CELL * row + CELL / 2, CELL / 2 - 2)
        answers["count"] = COUNTS[len(cells) - 1]
    else:
        side = rng.choice(SIDES)
        x = rng.randint(24, 32) if side == "left" else rng.randint(SIZE - 32, SIZE - 24)
        _draw_shape(pen, rng.choice(SHAPES), fill, x, rng.randint(24, SIZE - 24), 22)
        answers["side"] = side
    asked = list(answers)
    rng.shuffle(asked)
    return image, [(QUESTIONS[key][0], answers[key]) for key in asked]


def write_shapes_dataset(folder: str | Path, rows: int, seed: int = 0, name: str = "shapes.jsonl") -> Path:
    """Write `rows` conversations (one image each) and their images into `folder`; returns the
    JSONL file."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = []
    for index in range(rows):
        image, pairs = sample(rng)
        relative = f"images/{seed}-{index:04d}.png"
        image.save(folder / relative)
        messages = []
        for number, (question, answer) in enumerate(pairs):
            messages += [{"role": "user", "content": ("<image>" if number == 0 else "") + question},
                         {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": messages, "images": [relative]}))
    target = folder / name
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


def zip_dataset(folder: str | Path, target: str | Path) -> Path:
    """Every file under `folder` in one zip, paths relative to it."""
    folder, target = Path(folder), Path(target)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return target


def questions(jsonl: str | Path) -> list[tuple[str, str, str, str]]:
    """(image path, question, answer, kind) of every question asked in a shapes file."""
    jsonl = Path(jsonl)
    kinds = {question: kind for kind, (question, _) in QUESTIONS.items()}
    found = []
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        image = str(jsonl.parent / row["images"][0])
        for ask, answer in zip(row["messages"][::2], row["messages"][1::2]):
            question = ask["content"].replace("<image>", "")
            found.append((image, question, answer["content"], kinds[question]))
    return found


def evaluate(engine, jsonl: str | Path, blank: bool = False, exact: bool = True, choice: bool = True) -> dict:
    """How a chat engine on a VL model answers the questions of a shapes file, each asked alone
    with its image (a white image instead when `blank`):
    - `exact`: the share of greedy replies equal to the answer;
    - `choice`: the share of questions where the answer is the likeliest of its question's
      possible answers (what chance means: `chance` is that share for a uniform guess);
    both also per kind of question; a measure not asked for is None."""
    from PIL import Image

    from models.chat_request import SamplingParams

    greedy = SamplingParams(temperature=0, max_tokens=8)
    white = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    per_kind: dict[str, list[tuple[bool, bool]]] = {}
    for path, question, answer, kind in questions(jsonl):
        image = white if blank else Image.open(path).convert("RGB")
        messages = [{"role": "user", "content": f"<image>{question}"}]
        right = engine.reply(messages, greedy, images=[image])[1].strip() == answer if exact else None
        likeliest = None
        if choice:
            options = QUESTIONS[kind][1]
            scores = [_answer_logprob(engine, messages, image, option) for option in options]
            likeliest = options[scores.index(max(scores))] == answer
        per_kind.setdefault(kind, []).append((right, likeliest))
    every = [hit for hits in per_kind.values() for hit in hits]
    share = lambda hits, i: None if hits[0][i] is None else sum(h[i] for h in hits) / len(hits)  # noqa: E731
    return {"exact": share(every, 0), "choice": share(every, 1),
            "chance": sum(len(hits) / len(QUESTIONS[kind][1]) for kind, hits in per_kind.items()) / len(every),
            "per_kind": {kind: {"exact": share(hits, 0), "choice": share(hits, 1), "questions": len(hits)}
                         for kind, hits in per_kind.items()}}


def _answer_logprob(engine, messages: list[dict], image, answer: str) -> float:
    """Log-probability of `answer` (and the end of the turn) as the reply to `messages`."""
    import paddle
    import paddle.nn.functional as F

    from models.vl_inputs import encode_vl_conversation, prompt_inputs

    prompt = encode_vl_conversation(engine.tokenizer, engine.image_processor, messages, [image])
    whole = encode_vl_conversation(engine.tokenizer, engine.image_processor,
                                   messages + [{"role": "assistant", "content": answer}], [image])
    reply = whole.input_ids[len(prompt.input_ids):]
    with paddle.no_grad():
        logits = engine.model(**prompt_inputs(prompt, reply), use_cache=False, return_dict=True).logits
    logprobs = F.log_softmax(logits[0].astype("float32"), axis=-1).numpy()
    start = len(prompt.input_ids) - 1
    return float(sum(logprobs[start + i, token] for i, token in enumerate(reply)))
