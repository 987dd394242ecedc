"""Chat with images: `python -m models.serve` on the tiny VL model driven by the official `openai`
client (an image as a data: URL or a local path, plain and streamed, image tokens in usage), every
bad image refused with a 400 naming its part, a text model refusing images, and KV-cached decoding
of an image prompt equal to decoding without the cache."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
from PIL import Image

from models.chat_request import SamplingParams
from models.server_process import ModelServer
from trainer.data.shapes import questions, write_shapes_dataset

NAME = "tiny-vl"
GREEDY = dict(temperature=0, max_tokens=6, extra_body={"ignore_eos": True})


@pytest.fixture(scope="module")
def tiny_vl_dir(workdir):
    from models.tiny import ensure_built

    return ensure_built("ernie-4.5-tiny-vl", workdir / "models")


@pytest.fixture(scope="module")
def server(tiny_vl_dir, tmp_path_factory):
    server = ModelServer(str(tiny_vl_dir), name=NAME, log_path=tmp_path_factory.mktemp("logs") / "vl.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(tiny_vl_dir):
    from models.chat_engine import ChatEngine

    return ChatEngine.load(str(tiny_vl_dir))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Two shape images (PNG files) and a question about each."""
    jsonl = write_shapes_dataset(tmp_path_factory.mktemp("shapes"), rows=2, seed=3)
    first = {}
    for path, question, *_ in questions(jsonl):
        first.setdefault(path, question)
    return list(first.items())


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def asking(url: str, question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": question}]}]


def engine_reply(engine, path: str, question: str, max_tokens: int = 6) -> tuple[str, object]:
    """What the engine in this process answers (greedily) and its prompt, as the server should."""
    image = Image.open(path).convert("RGB")
    prompt = engine.prepare([{"role": "user", "content": "<image>" + question}], max_tokens, images=[image])
    text = "".join(chunk.content for chunk in engine.stream(prompt, SamplingParams(temperature=0, ignore_eos=True)))
    return text, prompt


def test_an_image_as_a_data_url_gets_the_engines_reply_and_image_tokens_in_usage(server, engine, shapes):
    from models.image_facts import image_tokens

    path, question = shapes[0]
    with open(path, "rb") as f:
        reply = client(server).chat.completions.create(model=NAME, messages=asking(data_url(f.read()), question),
                                                       **GREEDY)
    expected, prompt = engine_reply(engine, path, question)
    assert expected and reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "length"
    usage = reply.usage
    width, height = Image.open(path).size
    processor = engine.image_processor
    # the image's patch tokens and its start and end tokens
    assert usage.prompt_tokens_details.image_tokens == image_tokens(
        width, height, processor.min_pixels, processor.max_pixels) + 2 == prompt.image_tokens
    assert usage.prompt_tokens == len(prompt.ids) and usage.completion_tokens == 6
    assert usage.total_tokens == len(prompt.ids) + 6


def test_a_streamed_reply_with_an_image_equals_the_whole_one(server, engine, shapes):
    path, question = shapes[1]
    with open(path, "rb") as f:
        url = data_url(f.read())
    chunks = list(client(server).chat.completions.create(model=NAME, messages=asking(url, question), stream=True,
                                                         stream_options={"include_usage": True}, **GREEDY))
    expected, prompt = engine_reply(engine, path, question)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.prompt_tokens_details.image_tokens == prompt.image_tokens
    assert chunks[-1].usage.prompt_tokens == len(prompt.ids)


def test_a_local_path_and_a_file_url_read_the_same_image(server, shapes):
    path, question = shapes[0]
    with open(path, "rb") as f:
        url = data_url(f.read())
    replies = [client(server).chat.completions.create(model=NAME, messages=asking(source, question), **GREEDY)
               for source in (url, path, f"file://{path}")]
    assert len({r.choices[0].message.content for r in replies}) == 1
    assert len({r.usage.prompt_tokens for r in replies}) == 1


def test_two_images_in_two_turns_count_both(server, engine, shapes):
    (first, question), (second, _) = shapes
    messages = asking(first, question) + [{"role": "assistant", "content": "red"}] + asking(second, question)
    reply = client(server).chat.completions.create(model=NAME, messages=messages, **GREEDY)
    one = engine_reply(engine, first, question)[1].image_tokens
    two = engine_reply(engine, second, question)[1].image_tokens
    assert reply.usage.prompt_tokens_details.image_tokens == one + two


def corrupt_png() -> bytes:
    data = bytearray(png_bytes(Image.new("RGB", (64, 64), (200, 30, 30))))
    data[data.index(b"IDAT") + 10] ^= 0xFF  # a byte of the pixel data: its chunk's checksum no longer holds
    return bytes(data)


def bomb_png() -> bytes:
    """A small file of 100 million pixels, over PIL's decompression-bomb limit (89 million)."""
    return png_bytes(Image.new("1", (10_000, 10_000)))


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
SECOND_PART = "messages[1].content[2].image_url"

# (id, the bad image's url (a function of a temporary folder), words of the message)
BAD_IMAGES = [
    ("http-url", lambda tmp: "https://example.com/cat.png", "the server does not fetch https URLs; send the image "
                                                             "itself as a data:image/...;base64, URL"),
    ("ftp-url", lambda tmp: "ftp://example.com/cat.png", "unsupported URL scheme ftp"),
    ("relative-path", lambda tmp: "cat.png", "'cat.png' is neither a data:image/...;base64, URL nor an absolute"),
    ("not-base64", lambda tmp: "data:image/png;base64,@@not base64@@", "base64 data cannot be decoded"),
    ("not-an-image-media", lambda tmp: data_url(b"hello", "text/plain"), "holds 'text/plain', not an image"),
    ("not-a-data-url", lambda tmp: "data:image/png,rawbytes", "malformed data URL"),
    ("zero-bytes", lambda tmp: "data:image/png;base64,", "is a zero-byte file, not an image"),
    ("text-as-png", lambda tmp: data_url(b"just some words, not pixels"),
     "data:image/png;base64,… is a text file, not an image (it starts with 'just some words, not pixels')"),
    ("corrupt-png", lambda tmp: data_url(corrupt_png()), "is a damaged PNG image"),
    ("svg", lambda tmp: data_url(SVG, "image/svg+xml"), "is an SVG (vector) image; convert it to PNG or JPEG"),
    ("decompression-bomb", lambda tmp: data_url(bomb_png()),
     "has 100000000 pixels, over PIL's decompression-bomb limit"),
    ("missing-file", lambda tmp: str(tmp / "nowhere.png"), "no such file: "),
    ("directory", lambda tmp: str(tmp), "is not a regular file"),
    ("file-over-the-cap", lambda tmp: over_the_cap(tmp), "bytes; the limit for an image is 16777216 bytes"),
    ("text-file", lambda tmp: text_file(tmp), "secret.txt is not an image PIL can read"),
]


def over_the_cap(tmp) -> str:
    path = tmp / "huge.png"
    with open(path, "wb") as f:
        f.truncate(17 << 20)  # sparse: the size is what counts
    return str(path)


def text_file(tmp) -> str:
    path = tmp / "secret.txt"
    path.write_text("password=hunter2\n")
    return str(path)


@pytest.mark.parametrize("make_url,words", [pytest.param(make, words, id=name) for name, make, words in BAD_IMAGES])
def test_a_bad_image_is_refused_naming_its_message_and_part(server, shapes, tmp_path, make_url, words):
    good = shapes[0][0]
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": [{"type": "text", "text": "Compare "},
                                             {"type": "image_url", "image_url": {"url": good}},
                                             {"type": "image_url", "image_url": {"url": make_url(tmp_path)}}]}]
    with pytest.raises(openai.BadRequestError) as refused:
        client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=2)
    error = refused.value.body
    assert error["param"] == SECOND_PART and error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{SECOND_PART}: ") or error["message"].startswith(f"{SECOND_PART} ")
    assert words in error["message"], error["message"]
    assert "hunter2" not in error["message"]


@pytest.mark.parametrize("messages,param,words", [
    pytest.param([{"role": "user", "content": "What is <image> in HTML?"}], "messages[0].content",
                 "holds the text '<image>', which this vision model reads as the place of an image", id="placeholder"),
    pytest.param([{"role": "user", "content": [{"type": "text", "text": "a <|IMAGE_START|>"}]}],
                 "messages[0].content[0].text", "holds the text '<|IMAGE_START|>'", id="image-token"),
    pytest.param([{"role": "user", "content": [{"type": "text", "text": "<ima"}, {"type": "text", "text": "ge>"}]}],
                 "messages[0].content", "holds the text '<image>'", id="placeholder-across-parts"),
    pytest.param([{"role": "user", "content": "hi"},
                  {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "/x.png"}}]},
                  {"role": "user", "content": "and?"}],
                 "messages[1].content[0]", "images are taken in user messages only (this one's role is 'assistant')",
                 id="image-in-a-reply"),
    pytest.param([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
                 "messages[0].content[0]", "unknown content part type 'input_audio'; expected 'text' or 'image_url'",
                 id="audio-part"),
    pytest.param([{"role": "user", "content": [{"type": "image_url", "image_url": {"link": "/x.png"}}]}],
                 "messages[0].content[0].image_url", "must be an object whose 'url' is", id="no-url"),
])
def test_a_bad_message_is_refused_naming_its_part(server, messages, param, words):
    with pytest.raises(openai.BadRequestError) as refused:
        client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=2)
    assert refused.value.body["param"] == param and words in refused.value.body["message"], refused.value.body


def test_a_text_model_refuses_an_image_and_takes_the_placeholder_as_text(tiny_moe_dir, shapes):
    """Through the same app in this process (starlette's test client), on the tiny text model."""
    import threading

    from starlette.testclient import TestClient

    from models.api import create_app
    from models.chat_engine import ChatEngine
    from models.serve import ModelHost

    host = ModelHost("tiny-text")
    text_engine = ChatEngine.load(str(tiny_moe_dir), name="tiny-text")
    threading.Thread(target=host.run, args=(lambda: text_engine,), daemon=True).start()
    with TestClient(create_app(host)) as http:
        while host.state != "ready":
            threading.Event().wait(0.05)
        text = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)
        assert text.models.list().data[0].model_extra["vision"] is False
        path, question = shapes[0]
        with pytest.raises(openai.BadRequestError) as refused:
            text.chat.completions.create(model="tiny-text", messages=asking(path, question), max_tokens=2)
        assert refused.value.body["message"] == ("model 'tiny-text' is a text model and cannot take images; send "
                                                 "text only, or choose an ERNIE 4.5 VL model")
        assert refused.value.body["param"] == "messages"
        reply = text.chat.completions.create(model="tiny-text", max_tokens=2,
                                             messages=[{"role": "user", "content": "What is <image> in HTML?"}])
        assert reply.usage.prompt_tokens_details.image_tokens == 0


def test_a_server_for_remote_clients_reads_no_local_files(shapes):
    from models.chat_images import read_images
    from models.chat_request import RequestError, parse_chat_request

    path, question = shapes[0]
    request = parse_chat_request({"messages": asking(path, question)})
    with pytest.raises(RequestError) as refused:
        read_images(request, local_files=False)
    assert refused.value.param == "messages[0].content[0].image_url"
    assert "reads no local files; send the image as a data:image/...;base64, URL" in refused.value.message
    with open(path, "rb") as f:
        request = parse_chat_request({"messages": asking(data_url(f.read()), question)})
    read_images(request, local_files=False)
    assert [image.size for image in request.loaded_images] == [Image.open(path).size]


def test_cached_decoding_of_an_image_prompt_equals_decoding_without_the_cache(engine, shapes):
    path, question = shapes[0]
    prompt = engine_reply(engine, path, question)[1]
    params = SamplingParams(temperature=0)
    cached = list(engine.generate_ids(prompt.ids, params, 12, use_cache=True, vision=prompt.vision))
    uncached = list(engine.generate_ids(prompt.ids, params, 12, use_cache=False, vision=prompt.vision))
    assert cached == uncached and len(cached) == 12


def test_the_request_schema_documents_image_parts(server):
    import httpx

    schemas = httpx.get(f"{server.base_url}/openapi.json").json()["components"]["schemas"]
    assert "url" in schemas["ImageURL"]["properties"] and "ImagePart" in json.dumps(schemas["Message"])


# -- the Chat tab's side (webui/chat_attachments.py): no server needed --------------------------------

def test_the_chat_tab_sends_a_conversations_images_as_data_urls(shapes):
    from webui.chat_tab import api_messages

    path, question = shapes[0]
    with open(path, "rb") as f:
        url = data_url(f.read())
    # as Gradio hands a Chatbot's value back to a handler: every content a list of parts
    history = [{"role": "user", "metadata": None, "options": None,
                "content": [{"type": "file", "file": {"path": path, "mime_type": "image/png"}, "alt_text": None},
                            {"type": "text", "text": question}]},
               {"role": "assistant", "metadata": None, "options": None, "content": [{"type": "text", "text": "red"}]},
               {"role": "assistant", "metadata": {"title": "⚠️"}, "content": [{"type": "text", "text": "failed"}]},
               {"role": "user", "content": "And its shape?"}]
    assert api_messages(history, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": question}]},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "And its shape?"}]
    assert api_messages(history, "", images=False)[0] == {"role": "user", "content": question}


def test_the_chat_tab_refuses_an_attachment_that_is_not_an_image(tmp_path):
    from trainer.messages import Message
    from webui.chat_attachments import Refused, check_attachments
    from webui.i18n import Phrase

    svg = tmp_path / "drawing.png"
    svg.write_bytes(SVG)
    with pytest.raises(Refused) as refused:
        check_attachments([svg])
    assert isinstance(refused.value.fields["problem"], Message)
    phrase = Phrase(refused.value.key, refused.value.fields)
    assert phrase.text("en") == "Not sent: drawing.png is an SVG (vector) image; convert it to PNG or JPEG"
    assert phrase.text("zh") == "未发送：drawing.png 是 SVG 矢量图；请转换为 PNG 或 JPEG"
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(8 << 20)  # sparse: the size is what counts
    with pytest.raises(Refused) as refused:
        check_attachments([huge])
    assert Phrase(refused.value.key, refused.value.fields).text("en") == (
        "Not sent: huge.png is 8.0 MB; an image can be at most 5.8 MB (what fits in one request to the model server)")
