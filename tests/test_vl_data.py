"""Datasets with images: ERNIEKit's VL format, `messages` + `images` with `<image>` placeholders and
OpenAI content parts read to the canonical Example; the image checks (path, file, format, size)
and zip or drag-and-drop uploads, each bad input answered with its own message naming file, line
and field and leaving nothing half-written; image statistics; thumbnails in the Data tab's
preview. Every image is drawn here with PIL."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from models.image_facts import image_tokens
from tests.browser_helpers import english_words
from tests.data_fixtures import write_jsonl
from trainer.data import check
from trainer.data.dataset_zip import ZipLimits, ZipRefused, unpack
from trainer.data.formats import convert, detect_format, try_convert
from trainer.data.images import DATA_URL_FOLDER, ImageContext, ImageLimits
from trainer.data.messages import DATA_MESSAGES
from trainer.data.stats import compute_stats
from trainer.data.validate import load_examples, validate_file
from trainer.messages import Message

SHARED = Path("/work/shared/datasets")
Q, A = "What colour is the shape?", "Red."


def picture(path: Path, size=(64, 64), colour="red", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)
    return path


def png_bytes(size=(56, 56), colour="green") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels."""
    data = png_bytes((1, 1))
    body = struct.pack(">II", width, height) + data[24:29]
    return data[:12] + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + data[33:]


def chat(images: list, text: str = "<image>" + Q) -> dict:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": A}], "images": images}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- the three formats, read to the canonical Example --------------------------------------------------

def test_erniekit_vl_rows_are_read_as_paddleformers_reads_them(tmp_path):
    a, b = picture(tmp_path / "img" / "a.png"), picture(tmp_path / "img" / "b.jpg", colour="blue")
    row = {"image_info": [{"image_url": "img/b.jpg", "matched_text_index": 3},
                          {"image_url": "img/a.png", "matched_text_index": 0},
                          {"image_url": str(a)}],  # no index: 0, as ERNIEKit's reader has it
           "text_info": [{"text": "Look. ", "tag": "mask"}, {"text": Q, "tag": "mask"},
                         {"text": A, "tag": "no_mask"}, {"text": "And this?", "tag": "no_mask"}],
           "system": "Be brief."}
    row["text_info"][3]["tag"] = "mask"
    row["text_info"].append({"text": "Blue.", "tag": "no_mask"})
    assert detect_format([row]) == "erniekit_vl"
    example = convert(row, "erniekit_vl", str(tmp_path / "d.jsonl"), 1)
    assert [(t.role, t.content) for t in example.messages] == [
        ("system", "Be brief."), ("user", "<image><image>Look. " + Q), ("assistant", A),
        ("user", "<image>And this?"), ("assistant", "Blue.")]
    assert example.images == (str(a), str(a), str(b))
    assert example.to_record()["images"] == [str(a), str(a), str(b)]
    # an image with the text that starts a reply belongs to the prompt before it (captioning rows)
    caption = {"image_info": [{"image_url": "img/a.png", "matched_text_index": 0}],
               "text_info": [{"text": "A red square.", "tag": "no_mask"}]}
    assert [(t.role, t.content) for t in convert(caption, "erniekit_vl", str(tmp_path / "d.jsonl")).messages] == [
        ("user", "<image>"), ("assistant", "A red square.")]


def test_messages_and_sharegpt_with_images_and_placeholders(tmp_path):
    picture(tmp_path / "pics" / "1.jpg")
    rows = [chat(["pics/1.jpg", "pics/1.jpg"], "<image>Who?<image>"),
            {"conversations": [{"from": "human", "value": "<image>" + Q}, {"from": "gpt", "value": A}],
             "images": "pics/1.jpg"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows[:1])
    examples, report = load_examples(path)
    assert report.format == "messages" and report.ok
    assert examples[0].images == (str(tmp_path / "pics" / "1.jpg"),) * 2
    example = convert(rows[1], "sharegpt", str(path), 2)
    assert example.images == (str(tmp_path / "pics" / "1.jpg"),)
    # text rows are read as before
    assert convert({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
                   "messages").images == ()


def test_openai_content_parts_with_paths_and_data_urls(tmp_path):
    inside = picture(tmp_path / "a.png")
    encoded = png_bytes()
    row = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare "}, {"type": "image_url", "image_url": {"url": "a.png"}},
        {"type": "text", "text": " with "}, {"type": "image_url", "image_url": {"url": data_url(encoded)}},
        {"type": "image_url", "image_url": str(inside)}]},
        {"role": "assistant", "content": [{"type": "text", "text": A}]}]}
    example = convert(row, "messages", str(tmp_path / "d.jsonl"), 1)
    assert example.messages[0].content == "Compare <image> with <image><image>"
    assert example.messages[1].content == A
    written = tmp_path / DATA_URL_FOLDER / (__import__("hashlib").sha256(encoded).hexdigest()[:32] + ".png")
    assert example.images == (str(inside), str(written), str(inside)) and written.read_bytes() == encoded
    before = written.stat().st_mtime_ns
    assert convert(row, "messages", str(tmp_path / "d.jsonl"), 1).images == example.images
    assert written.stat().st_mtime_ns == before and files_under(tmp_path / DATA_URL_FOLDER) == {written.name}


@pytest.mark.skipif(not (SHARED / "mllm_demo_data").is_dir(), reason="no shared mllm demo here")
def test_the_llama_factory_demo_set(tmp_path):
    report = validate_file(SHARED / "mllm_demo.json", limits=check.image_limits())
    assert (report.format, report.ok, report.rows_valid) == ("messages", True, 6)
    examples, _ = load_examples(SHARED / "mllm_demo.json")
    assert examples[0].images == (str(SHARED / "mllm_demo_data" / "1.jpg"),) * 2


# -- bad input: a data check names file, line, field, and writes nothing -------------------------------

def _over_there(tmp_path):
    picture(tmp_path.parent / "elsewhere.png")
    return chat(["../elsewhere.png"])


def _absolute_outside(tmp_path):
    return chat([str(picture(tmp_path.parent / "outside.png"))])


def _link_out(tmp_path):
    os.symlink(picture(tmp_path.parent / "target.png"), tmp_path / "link.png")
    return chat(["link.png"])


def _file(name: str, content: bytes, row=None):
    def make(tmp_path):
        (tmp_path / name).write_bytes(content)
        return row or chat([name])
    return make


def _image(name: str, size, row=None):
    def make(tmp_path):
        picture(tmp_path / name, size)
        return row or chat([name])
    return make


def _parts(*parts):
    return lambda tmp_path: {"messages": [{"role": "user", "content": list(parts)},
                                          {"role": "assistant", "content": A}]}


def _erniekit(image_info, text_info=None, **more):
    return lambda tmp_path: {"image_info": image_info, **more, "text_info": text_info or [
        {"text": Q, "tag": "mask"}, {"text": A, "tag": "no_mask"}]}


TRUNCATED_PNG = png_bytes((64, 64))[:60]
# (what goes wrong, row maker, field, words of its message)
BAD_ROWS = [
    ("missing", lambda tmp: chat(["gone.png"]), "images[0]", "image file not found: gone.png"),
    ("corrupt-png", _file("c.png", TRUNCATED_PNG), "images[0]", "c.png is a damaged PNG image"),
    ("zero-bytes", _file("z.png", b""), "images[0]", "z.png is a zero-byte file, not an image"),
    ("text-named-png", _file("t.png", b"not a picture\n"), "images[0]",
     "t.png is a text file, not an image (it starts with 'not a picture')"),
    ("svg", _file("v.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'), "images[0]",
     "v.png is an SVG (vector) image; convert it to PNG or JPEG"),
    ("bomb", _file("b.png", bomb_png(10_000, 10_000)), "images[0]",
     "b.png has 100000000 pixels, over PIL's decompression-bomb limit of 89478485"),
    ("tiff", _image("s.tif", (64, 64)), "images[0]", "s.tif is a TIFF image; supported: JPEG, PNG, WEBP, BMP, GIF"),
    ("too-few-images", _image("a.png", (64, 64), chat(["a.png"], "<image><image>" + Q)), "images",
     "<image> placeholders in the text: 2; images given: 1"),
    ("no-images", lambda tmp: chat([], "<image>" + Q), "images",
     "<image> placeholders in the text: 1; images given: 0"),
    ("dot-dot", _over_there, "images[0]", "the image path ../elsewhere.png leads outside the dataset's folder"),
    ("absolute-outside", _absolute_outside, "images[0]", "is outside the dataset's folder"),
    ("symlink-out", _link_out, "images[0]", "link.png is a symbolic link to"),
    ("over-max-pixels", _image("big.png", (1200, 900)), "images[0]",
     "big.png is 1200x900 = 1080000 pixels, over vl.max_pixels (1003520); scale it down or raise vl.max_pixels"),
    ("under-min-pixels", _image("small.png", (40, 40)), "images[0]",
     "small.png is 40x40 = 1600 pixels, under vl.min_pixels (3136); use a larger image or lower vl.min_pixels"),
    ("http-url", _parts({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}),
     "messages[0].content[0].image_url", "https URLs are not downloaded"),
    ("ftp-url", lambda tmp: chat(["ftp://host/a.png"]), "images[0]", "unsupported URL scheme ftp"),
    ("data-url-not-image", _parts({"type": "image_url", "image_url": {"url": data_url(b"hello", "text/plain")}}),
     "messages[0].content[0].image_url", "the data URL holds 'text/plain', not an image"),
    ("data-url-bad-base64", _parts({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}),
     "messages[0].content[0].image_url", "the data URL's base64 data cannot be decoded"),
    ("data-url-corrupt", _parts({"type": "image_url", "image_url": {"url": data_url(TRUNCATED_PNG)}}),
     "messages[0].content[0].image_url", "data:image/png;base64,… is a damaged PNG image"),
    ("video-info", _erniekit([], video_info=[{"image_url": ["f1.jpg", "f2.jpg"], "matched_text_index": 0}]),
     "video_info", "videos are not supported"),
    ("video-frames", _erniekit([{"image_url": "f1.jpg", "image_type": "video", "matched_text_index": 0}]),
     "image_info[0].image_type", "videos are not supported"),
    ("video-part", _parts({"type": "video_url", "video_url": {"url": "v.mp4"}}), "messages[0].content[0].type",
     "videos are not supported"),
    ("videos-key", lambda tmp: {**chat([], Q), "videos": ["v.mp4"]}, "videos", "videos are not supported"),
    ("image-in-reply", _erniekit([{"image_url": "a.png", "matched_text_index": 2}],
                                 [{"text": Q, "tag": "mask"}, {"text": A, "tag": "no_mask"},
                                  {"text": "More.", "tag": "no_mask"}]),
     "image_info[0].matched_text_index", "2 puts the image inside a reply"),
    ("index-past-texts", _erniekit([{"image_url": "a.png", "matched_text_index": 5}]),
     "image_info[0].matched_text_index", "5 is not an index of text_info (0 to 1)"),
    ("unknown-tag", _erniekit([], [{"text": Q, "tag": "ask"}, {"text": A, "tag": "no_mask"}]), "text_info[0].tag",
     "unknown tag 'ask'; expected mask (the prompt) or no_mask (the reply to learn)"),
    ("ends-with-prompt", _erniekit([], [{"text": A, "tag": "no_mask"}, {"text": Q, "tag": "mask"}]),
     "text_info[0].tag", "the first text is a reply (no_mask) with no prompt or image before it"),
    ("unknown-part", _parts({"type": "audio", "audio": "x.wav"}), "messages[0].content[0].type",
     "unknown content part type 'audio'; expected text or image_url"),
    ("dpo-with-images", lambda tmp: {"messages": [{"role": "user", "content": "<image>" + Q}], "chosen": A,
                                     "rejected": "Blue.", "images": ["a.png"]}, "images",
     "images are taken in the SFT formats messages and sharegpt; a messages_dpo row cannot have them"),
    ("both-ways", lambda tmp: {**_parts({"type": "image_url", "image_url": {"url": "a.png"}})(tmp),
                               "images": ["a.png"]}, "images", "images are given both as image_url parts and in"),
]


@pytest.mark.parametrize("make, field, words", [case[1:] for case in BAD_ROWS], ids=[case[0] for case in BAD_ROWS])
def test_a_bad_image_row_names_its_field_and_writes_nothing(tmp_path, capsys, make, field, words):
    folder = tmp_path / "set"
    folder.mkdir()
    row = make(folder)
    good = {"messages": chat([], Q), "erniekit_vl": _erniekit([])(folder),
            "messages_dpo": {"messages": [{"role": "user", "content": Q}], "chosen": A, "rejected": "Blue."}}
    good = good[detect_format([row])]
    path = write_jsonl(folder / "d.jsonl", [good, row])
    before = files_under(folder)
    assert check.main([str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    issues = [(i["line"], i["field"]) for i in report["issues"]]
    assert issues[0] == (2, field) and words in report["issues"][0]["message"], report["issues"]
    assert Message.from_json(report["issues"][0]["i18n"]) == report["issues"][0]["message"]
    assert files_under(folder) == before


def test_pixel_limits_follow_the_config_values(tmp_path, capsys):
    picture(tmp_path / "a.png", (64, 64))
    path = write_jsonl(tmp_path / "d.jsonl", [chat(["a.png"])])
    assert check.main([str(path), "--json", "--max-pixels", "4000"]) == 1
    assert "over vl.max_pixels (4000)" in capsys.readouterr().out
    assert check.main([str(path), "--json", "--min-pixels", "1024"]) == 0
    assert image_tokens(64, 64) == json.loads(capsys.readouterr().out)["stats"]["images"]["tokens_per_row"]["max"]


# -- statistics -------------------------------------------------------------------------------------

def test_image_statistics(tmp_path):
    for name, size in (("s.png", (60, 60)), ("m.png", (300, 168)), ("l.png", (640, 480))):
        picture(tmp_path / name, size)
    rows = [chat(["s.png", "l.png"], "<image><image>" + Q), chat(["m.png"]), chat([], Q)]
    limits = ImageLimits(3136, 1003520)
    context = ImageContext.for_file(str(tmp_path / "d.jsonl"), limits)
    examples = [convert(row, "messages", str(tmp_path / "d.jsonl"), i, context) for i, row in enumerate(rows, 1)]
    images = compute_stats(examples, limits=limits)["images"]
    tokens = [image_tokens(60, 60) + image_tokens(640, 480), image_tokens(300, 168)]
    assert (images["rows"], images["total"]) == (2, 3)
    assert images["per_row"] == {"mean": 1.0, "min": 0, "max": 2}
    assert images["size"] == {"min": [60, 60], "median": [300, 168], "max": [640, 480]}
    assert images["tokens_per_row"] == {"min": min(tokens), "mean": sum(tokens) / 2, "max": max(tokens)}
    assert compute_stats(examples[2:])["images"] is None


# -- uploads: zips and images dropped with their data file --------------------------------------------

def make_zip(path: Path, entries: dict[str, bytes], links: tuple[str, ...] = (), method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=method)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


GOOD_SET = {"my set/train.jsonl": jsonl(chat(["imgs/a.png"]), chat(["imgs/b.png"])),
            "my set/imgs/a.png": png_bytes((64, 64), "red"), "my set/imgs/b.png": png_bytes((64, 64), "blue"),
            "my set/README.md": b"notes", "__MACOSX/my set/._train.jsonl": b"junk"}


@pytest.fixture
def store(tmp_path):
    from webui.dataset_store import DatasetStore

    return DatasetStore(tmp_path / "studio", max_bytes=64 * 1024)


def assert_nothing_stored(store):
    assert store.list() == []
    assert [path.name for path in store.root.rglob("*")] in ([], [".incoming"])


def test_a_zip_is_stored_as_one_dataset_with_its_images(tmp_path, store):
    from webui import data_tab

    dataset = store.add(make_zip(tmp_path / "up.zip", GOOD_SET), "set.zip")
    assert dataset.ok and dataset.format == "messages" and dataset.rows_valid == 2 and dataset.name == "train.jsonl"
    assert files_under(dataset.path.parent) == {"train.jsonl", "imgs", "imgs/a.png", "imgs/b.png", "meta.json"}
    meta = store.meta(dataset)
    assert meta["left_out"] == ["my set/README.md"] and meta["stats"]["images"]["total"] == 2
    assert store.add(make_zip(tmp_path / "again.zip", GOOD_SET), "again.zip").id == dataset.id
    frame = data_tab.preview_frame(dataset, 0, "en")
    assert frame.attrs["images"] and list(frame.columns)[-1] == "Images"
    cell = frame.iloc[0]["Images"]
    assert cell.startswith("![1.1](data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(cell.split(",", 1)[1].rstrip(")"))))
    assert max(thumb.size) <= 72 and thumb.getpixel((5, 5))[0] > 200
    assert len(list((dataset.path.parent / ".thumbs").iterdir())) == 2
    stats = data_tab.stats_text(meta, "zh")
    assert "**图片** 2 行共 2 张" in stats and "64×64" in stats


def test_images_dropped_with_their_data_file_go_where_it_looks(tmp_path, ctx):
    import gradio as gr

    from webui import data_tab

    drop = tmp_path / "drop"
    drop.mkdir()
    data = write_jsonl(drop / "pets.jsonl", [chat(["photos/cat.png"]), chat(["dog.jpg"])])
    cat, dog = picture(drop / "cat.png"), picture(drop / "dog.jpg", colour="brown")
    stored = data_tab.store_uploads(ctx, [str(data), str(cat), str(dog)], "en")
    assert "Stored **pets.jsonl**" in stored.status and "with 2 image files" in stored.status
    dataset = ctx.datasets.get(stored.select["value"])
    assert dataset.ok and {"photos/cat.png", "dog.jpg"} <= files_under(dataset.path.parent)
    with gr.Blocks():
        tab = data_tab.build(ctx)
    shown = tab.updates(data_tab.show_dataset(ctx, dataset.id, "en"))[tab.preview]
    assert shown["datatype"] == ["str"] * 5 + ["markdown"] and "Images" in shown["value"].columns
    text = ctx.datasets.add(write_jsonl(drop / "t.jsonl", [chat([], Q)]), "t.jsonl")
    assert tab.updates(data_tab.show_dataset(ctx, text.id, "en"))[tab.preview]["datatype"] == "str"
    alone = data_tab.store_uploads(ctx, [str(picture(drop / "x.png"))], "zh")
    assert "图片需要配套的数据文件" in alone.status
    two = data_tab.store_uploads(ctx, [str(data), str(write_jsonl(drop / "b.jsonl", [chat([], Q)])),
                                       str(picture(drop / "y.png"))], "en")
    assert "2 data files came with images" in two.status and len(ctx.datasets.list()) == 2


@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio", max_upload_mb=1)


ZIPS_REFUSED = [
    ("dot-dot", {"train.jsonl": jsonl(chat([], Q)), "../evil.png": png_bytes()}, (),
     "entry '../evil.png' has '..' in its path"),
    ("absolute", {"train.jsonl": jsonl(chat([], Q)), "/tmp/evil.png": png_bytes()}, (),
     "entry '/tmp/evil.png' has an absolute path"),
    ("symlink", {"train.jsonl": jsonl(chat([], Q))}, ("imgs/a.png",), "entry 'imgs/a.png' is a symbolic link"),
    ("ratio-bomb", {"train.jsonl": jsonl(chat([], Q)), "a.png": bytes(2 << 20)}, (),
     "entry 'a.png' is compressed"),
    ("total-bomb", {"train.jsonl": jsonl(chat([], Q)), "a.png": bytes(300 << 10)}, (),
     "would unpack to 300.1 KB, over the limit of 256.0 KB"),
    ("no-data", {"a.png": png_bytes()}, (), "holds no data file"),
    ("two-data", {"a.jsonl": jsonl(chat([], Q)), "b.jsonl": jsonl(chat([], Q))}, (), "holds several data files"),
    ("outside", {"data/train.jsonl": jsonl(chat([], Q)), "imgs/a.png": png_bytes()}, (),
     "entry 'imgs/a.png' is outside the folder of the data file data/train.jsonl"),
]


@pytest.mark.parametrize("entries, links, words", [case[1:] for case in ZIPS_REFUSED],
                         ids=[case[0] for case in ZIPS_REFUSED])
def test_a_refused_zip_leaves_nothing_in_the_store(tmp_path, store, entries, links, words):
    from webui.dataset_store import DatasetError

    source = make_zip(tmp_path / "up.zip", entries, links)
    with pytest.raises(DatasetError) as refused:
        store.add(source, "set.zip")
    assert words in str(refused.value) and refused.value.text("zh") != str(refused.value)
    assert_nothing_stored(store)


def test_a_zip_that_is_not_one_and_an_entry_count_over_the_limit(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 not really")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ZipRefused, match="fake.zip is not a readable zip archive"):
        unpack(tmp_path / "fake.zip", "fake.zip", work)
    many = make_zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(6)} | {"d.jsonl": b"{}"})
    with pytest.raises(ZipRefused, match="holds 7 entries, more than the limit of 5"):
        unpack(many, "many.zip", work, ZipLimits(max_entries=5))
    assert list(work.iterdir()) == []


def test_damaged_encrypted_and_doubled_zip_entries(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    damaged = make_zip(tmp_path / "d.zip", {"d.jsonl": jsonl(chat([], Q)), "a.png": png_bytes()},
                       method=zipfile.ZIP_STORED)
    raw = bytearray(damaged.read_bytes())
    at = bytes(raw).index(b"IDAT")
    raw[at + 6] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ZipRefused, match="entry 'a.png' cannot be unpacked"):
        unpack(damaged, "d.zip", work)
    raw = bytearray(make_zip(tmp_path / "e.zip", {"d.jsonl": b"{}"}).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the encrypted flag, both headers
        raw[bytes(raw).index(signature) + offset] |= 0x1
    (tmp_path / "e.zip").write_bytes(bytes(raw))
    with pytest.raises(ZipRefused, match="entry 'd.jsonl' is encrypted"):
        unpack(tmp_path / "e.zip", "e.zip", work)
    with pytest.warns(UserWarning), zipfile.ZipFile(tmp_path / "t.zip", "w") as archive:
        archive.writestr("d.jsonl", b"{}")
        archive.writestr("d.jsonl", b"{}")
    with pytest.raises(ZipRefused, match="entry 'd.jsonl' is in the zip twice"):
        unpack(tmp_path / "t.zip", "t.zip", work)
    assert list(work.iterdir()) == []


# -- what the checks say, in Chinese -------------------------------------------------------------------

MORE_ROWS = [  # rows that reach the messages BAD_ROWS does not
    {"messages": [{"role": "user", "content": []}, {"role": "assistant", "content": A}]},
    {"image_info": [{"image_url": "a.png", "matched_text_index": "0"}],
     "text_info": [{"text": Q, "tag": "mask", "tool_calls": [{"name": "f"}]}, {"text": A, "tag": "no_mask"}]},
    {"text_info": [{"text": A, "tag": "no_mask"}, {"text": Q, "tag": "mask"}],
     "image_info": [{"image_url": "a.png", "matched_text_index": 0}]},
    chat([""]), chat([5]), chat({"a": 1}), chat(["data:image/png,abc"]), chat(["folder"]), chat(["d.jsonl/x.png"]),
    chat(["binary.png"]), chat(["tall.png"]), chat(["images/x.png"], "<image>" + Q),
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png_bytes())}}]},
                  {"role": "assistant", "content": A}]},
]


def test_every_image_and_zip_message_is_reached_and_reads_in_chinese(tmp_path):
    produced: dict[str, Message] = {}
    for name, make, _, _ in BAD_ROWS:
        folder = tmp_path / name
        folder.mkdir()
        row = make(folder)
        _, issues = try_convert(row, detect_format([row]), str(folder / "d.jsonl"), 1,
                                ImageContext.for_file(str(folder / "d.jsonl"), check.image_limits()))
        produced.update((issue.message.key, issue.message) for issue in issues)
    folder = tmp_path / "more"
    (folder / "folder").mkdir(parents=True)
    (folder / "d.jsonl").write_text("{}")
    (folder / "binary.png").write_bytes(bytes(range(256)))
    (folder / "images").write_text("a file where the decoded images would go")
    picture(folder / "tall.png", (10, 6000))  # narrower than 1:200: the processor's resize cannot fit it
    for row in MORE_ROWS:
        _, issues = try_convert(row, detect_format([row]), str(folder / "d.jsonl"), 1,
                                ImageContext.for_file(str(folder / "d.jsonl"), ImageLimits(28 * 28, 120_000)))
        produced.update((issue.message.key, issue.message) for issue in issues)
    work = tmp_path / "work"
    work.mkdir()
    zips = [(entries, links, ZipLimits(max_total_bytes=256 << 10)) for _, entries, links, _ in ZIPS_REFUSED]
    zips += [(GOOD_SET, (), ZipLimits(max_entries=1))]
    (tmp_path / "bad.zip").write_bytes(b"nope")
    for i, (entries, links, limits) in enumerate([*zips, (None, (), None)]):
        source = make_zip(tmp_path / f"{i}.zip", entries, links) if entries is not None else tmp_path / "bad.zip"
        with pytest.raises(ZipRefused) as refused:
            unpack(source, "z.zip", work, limits or ZipLimits())
        produced[refused.value.message.key] = refused.value.message
    ours = {key for key in DATA_MESSAGES if key.split("-")[0] in ("image", "vl", "zip")}
    # made by test_damaged_encrypted_and_doubled_zip_entries
    assert ours - set(produced) == {"zip-encrypted", "zip-twice", "zip-damaged"}, sorted(ours - set(produced))
    names = {"images", "text_info", "image_url", "mask", "no_mask"}
    for key, message in produced.items():
        zh = message.text("zh")
        for value in message.fields.values():  # paths, values and library text stay as they are
            if isinstance(value, (str, int)) and not isinstance(value, Message):
                zh = zh.replace(str(value), " ")
        assert not english_words(zh.replace("'", " "), names), (key, zh)
        assert message.text("en") == message
