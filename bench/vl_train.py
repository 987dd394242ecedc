"""Vision-language costs on the embedded tiny ERNIE 4.5 VL model, in one process.

    train step:  a VL-SFT step (the studio's model set-up `trainer.train.build_model`, its
                 VisionCollator and VL loss, then backward and an AdamW update of the trainable
                 parameters) on --batch rows of one --image-size photo-like image and a short
                 exchange each, against the same model on text-only twins of those rows: each
                 image's tokens replaced by text tokens, so both batches hold the same number of
                 tokens and the same learned labels; the twins skip the vision transformer and
                 route every token among the text experts. Two run configs:
                   lora: examples/tiny_vl_sft_lora.yaml as shipped (LoRA on the language model,
                         vision transformer and adapter frozen), the one the target is for;
                   full: the same with finetuning.type=full and nothing frozen (every weight of
                         the vision transformer, adapter and language model trained), the
                         heaviest VL step there is.
                 VL and text steps take turns; the median of --steps steps of each after two
                 warm-up steps.
    preprocess:  `models.vl_inputs.ImageProcessor` (paddleformers' ERNIE-VL image processor: resize,
                 normalise, 14-pixel patches) on --images photo-like images already in memory, and
                 from their JPEG files (open and decode included), in images/s.
    chat:        time to first token of `ChatEngine` (cached decoding, greedy) for one image and a
                 question, from `prepare` (image preprocessing and encoding included) to the first
                 streamed text, against a text-only prompt of the same number of tokens. Median of
                 --runs runs, alternated.
Photo-like images: smooth colour fields with blobs and sensor noise, from a fixed seed (real
photos are not in the repository; flat synthetic shapes compress and resize unlike photos).

Run: .venv/bin/python bench/vl_train.py [--batch 8] [--image-size 224] [--steps 10] [--images 64] [--runs 5]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "ernie-4.5-tiny-vl"
REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "tiny_vl_sft_lora.yaml"
RUN_CONFIGS = {"lora": [], "full": ["finetuning.type=full", "vl.freeze_vision=false", "vl.freeze_adapter=false"]}
TARGET = 1.5
QUESTION = "Describe the picture: its colours, what stands out and where."
ANSWER = ("A soft field of colour fades from one corner to the other, with a few brighter patches near the "
          "middle and a darker band along the bottom edge.")
FILLER = ("The committee met on Tuesday to discuss the harvest, the price of grain in the northern markets and "
          "the repairs the old bridge will need before winter. ")


def photo(rng: np.random.Generator, size: int):
    """A photo-like RGB image: a smooth colour field, blurred blobs and noise."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        field = np.sin(x * rng.uniform(1, 5) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(1, 5) + rng.uniform(0, 6))
        for _ in range(4):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
            field += rng.uniform(-1, 1) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        channels.append(field)
    pixels = np.stack(channels, axis=-1)
    pixels = (pixels - pixels.min()) / (np.ptp(pixels) + 1e-9) * 220 + 18 + rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def vl_features(tokenizer, processor, images: list) -> list[dict]:
    """One training feature per image, encoded as a training run encodes a dataset row."""
    from trainer.data.rows import Example, Turn
    from trainer.data.vl_encode import encode_vl_sft

    features = []
    for image in images:
        example = Example([Turn("user", f"<image>{QUESTION}"), Turn("assistant", ANSWER)], images=(image,))
        feature, _ = encode_vl_sft(tokenizer, processor, example, max_seq_len=4096)
        features.append(feature)
    return features


def text_twin(feature: dict, text_ids: list[int]) -> dict:
    """The feature with its image tokens replaced by text tokens and no image: same length, same
    labels, every token typed text and positioned one after another."""
    ids = list(feature["input_ids"])
    filler = iter(text_ids * (len(ids) // len(text_ids) + 1))
    ids = [next(filler) if kind else token for token, kind in zip(ids, feature["token_type_ids"])]
    return {"input_ids": ids, "labels": list(feature["labels"]),
            "token_type_ids": [0] * len(feature["token_type_ids"]),
            "position_ids": [[i] * 3 for i in range(len(ids))], "images": None, "grid_thw": []}


def step_times(cfg, model_dir: Path, collator, batches: dict[str, list[dict]], steps: int) -> dict[str, list[float]]:
    """Seconds per training step (collation, forward with the VL loss, backward, AdamW update) for
    each named batch, on a model of its own set up as `cfg` says; the batches take turns, step by
    step, so that both see the same machine load."""
    import paddle

    from trainer.train import build_model
    from trainer.vision import vl_loss

    paddle.seed(0)
    runs = {}
    for name in batches:
        model = build_model(cfg, model_dir, "float32")
        model.train()
        trainable = [p for p in model.parameters() if not p.stop_gradient]
        runs[name] = (model, paddle.optimizer.AdamW(learning_rate=1e-5, parameters=trainable))
    times = {name: [] for name in batches}
    for step in range(steps + 2):
        for name, features in batches.items():
            model, optimizer = runs[name]
            started = time.perf_counter()
            loss = vl_loss(model, collator(features))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            float(loss)
            if step >= 2:
                times[name].append(time.perf_counter() - started)
    return times


def train_figures(model_dir: Path, collator, vl: list[dict], text: list[dict], steps: int) -> dict:
    from trainer.config import load_config

    figures = {}
    for mode, overrides in RUN_CONFIGS.items():
        times = step_times(load_config(EXAMPLE, overrides), model_dir, collator, {"vl": vl, "text": text}, steps)
        vl_s, text_s = statistics.median(times["vl"]), statistics.median(times["text"])
        figures[mode] = {"vl_step_s": round(vl_s, 4), "text_step_s": round(text_s, 4),
                         "vl_over_text": round(vl_s / text_s, 3)}
    return figures


def preprocess_rates(processor, images: list, folder: Path) -> dict:
    from models.vl_inputs import open_image

    paths = []
    for index, image in enumerate(images):
        path = folder / f"photo-{index:03d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    processor(images[0])  # warm-up
    started = time.perf_counter()
    for image in images:
        processor(image)
    in_memory = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        processor(open_image(path))
    from_files = time.perf_counter() - started
    return {"images_per_s": round(len(images) / in_memory, 1),
            "jpeg_images_per_s": round(len(images) / from_files, 1)}


def first_token_s(engine, text: str, images: list) -> tuple[float, int]:
    """(seconds from `prepare` to the first streamed text, prompt tokens) of a greedy reply."""
    from models.chat_request import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    started = time.perf_counter()
    prompt = engine.prepare([{"role": "user", "content": text}], max_tokens=8, images=images)
    for chunk in engine.stream(prompt, params, use_cache=True):
        if chunk.content or chunk.reasoning:
            return time.perf_counter() - started, len(prompt.ids)
    raise RuntimeError(f"the reply to {text!r} streamed no text in {params.max_tokens} tokens")


def same_length_text(engine, target: int) -> str:
    """A text-only question whose prompt is as close as it gets to `target` tokens (filler words
    before the question)."""
    words = FILLER.split()
    best = None
    for count in range(4 * target):
        candidate = " ".join((words * (count // len(words) + 1))[:count] + [QUESTION])
        length = len(engine.prepare([{"role": "user", "content": candidate}], max_tokens=8).ids)
        if best is None or abs(length - target) < abs(best[1] - target):
            best = (candidate, length)
        if length >= target:
            break
    return best[0]


def chat_figures(image, runs: int) -> dict:
    from models.chat_engine import ChatEngine

    engine = ChatEngine.load(MODEL)
    image_text = f"<image>{QUESTION}"
    image_tokens = len(engine.prepare([{"role": "user", "content": image_text}], max_tokens=8, images=[image]).ids)
    text = same_length_text(engine, image_tokens)
    first_token_s(engine, image_text, [image])  # warm-up: first-call allocations
    first_token_s(engine, text, [])
    with_image, text_only = [], []
    for _ in range(runs):
        with_image.append(first_token_s(engine, image_text, [image]))
        text_only.append(first_token_s(engine, text, []))
    image_s = statistics.median(t for t, _ in with_image)
    text_s = statistics.median(t for t, _ in text_only)
    return {"image_ttft_s": round(image_s, 4), "text_ttft_s": round(text_s, 4),
            "ttft_ratio": round(image_s / text_s, 2), "image_prompt_tokens": with_image[0][1],
            "text_prompt_tokens": text_only[0][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="bench-vl-")
    os.environ.setdefault("ERNIE_STUDIO_HOME", home)
    import paddle

    from models.loader import load_tokenizer
    from models.registry import resolve_model_dir
    from models.vl_inputs import ImageProcessor
    from trainer.vision import VisionCollator

    paddle.set_device("cpu")
    model_dir = resolve_model_dir(MODEL)
    tokenizer = load_tokenizer(model_dir)
    processor = ImageProcessor(model_dir)
    rng = np.random.default_rng(0)
    images = [photo(rng, args.image_size) for _ in range(max(args.images, args.batch))]

    vl = vl_features(tokenizer, processor, images[: args.batch])
    text_ids = tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    text = [text_twin(feature, text_ids) for feature in vl]
    tokens = sum(len(f["input_ids"]) for f in vl)
    image_tokens = sum(sum(f["token_type_ids"][:-1]) for f in vl)
    assert tokens == sum(len(f["input_ids"]) for f in text)
    train = train_figures(model_dir, VisionCollator(tokenizer.pad_token_id), vl, text, args.steps)

    rates = preprocess_rates(processor, images[: args.images], Path(home))
    chat = chat_figures(images[0], args.runs)

    print(f"training step, batch of {args.batch} rows, {tokens} tokens ({image_tokens} of them image tokens, "
          f"{args.image_size}x{args.image_size} images):")
    for mode, row in train.items():
        verdict = "" if mode != "lora" else \
            f" (target <= {TARGET}) {'OK' if row['vl_over_text'] <= TARGET else 'ABOVE TARGET'}"
        print(f"  {mode:4s}: VL {row['vl_step_s']:.4f} s, text-only twins {row['text_step_s']:.4f} s: "
              f"{row['vl_over_text']:.2f}x{verdict}")
    print(f"image preprocessing: {rates['images_per_s']:.1f} images/s in memory, "
          f"{rates['jpeg_images_per_s']:.1f} images/s from JPEG files")
    print(f"time to first token: image chat {chat['image_ttft_s']:.4f} s ({chat['image_prompt_tokens']} tokens), "
          f"text-only {chat['text_ttft_s']:.4f} s ({chat['text_prompt_tokens']} tokens): {chat['ttft_ratio']:.2f}x")
    print(json.dumps({
        "bench": "vl_train", "model": MODEL, "batch": args.batch, "image_size": args.image_size,
        "tokens_per_step": tokens, "image_tokens_per_step": image_tokens,
        **train, "target": TARGET, "steps": args.steps, "images": args.images, **rates, **chat, "runs": args.runs,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "paddle": version("paddlepaddle"),
                    "paddleformers": version("paddleformers"), "loadavg_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
