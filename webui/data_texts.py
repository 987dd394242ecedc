"""English and Chinese text of the Data tab's image datasets (uploads with images, the images column,
image statistics), merged into webui.i18n's CATALOGUE (kept here, importing nothing, so the
catalogue file stays within its size). What the checks say about a bad image or zip is the
trainer's (trainer/data/messages.py)."""

from __future__ import annotations


def _m(en: str, zh: str) -> dict:
    return {"en": {"text": en}, "zh": {"text": zh}}


DATA_TEXTS = {
    "msg-upload-images-alone": _m("images need their data file: drop the JSONL (or JSON, CSV, Parquet) file "
                                  "together with them, or upload a zip of both",
                                  "图片需要配套的数据文件：请把 JSONL（或 JSON、CSV、Parquet）文件和图片一起拖入，"
                                  "或把两者打包成 zip 上传"),
    "msg-upload-images-several": _m("{n} data files came with images; drop one data file with its images at a time, "
                                    "or upload each as a zip",
                                    "{n} 个数据文件和图片一起拖入；请每次只拖入一个数据文件及其图片，或分别打包成 zip 上传"),
    "msg-upload-image-twice": _m("two images named {name} were dropped; rename one, or upload a zip that keeps "
                                 "their folders", "拖入了两张名为 {name} 的图片；请重命名其中一张，或上传保留文件夹结构的 zip"),
    "msg-data-stored-images": _m("Stored **{name}** ({size}) with {n} image files.",
                                 "已保存 **{name}**（{size}）及 {n} 个图片文件。"),
    "msg-data-left-out": _m("Left out of {name}, being neither the data file nor images: {files}",
                            "{name} 中既不是数据文件也不是图片的文件未被采用：{files}"),
    "msg-col-images": _m("Images", "图片"),
    "msg-data-images": _m("**Images** {total} in {rows} rows · **per row** mean {mean}, max {max} · **sizes** "
                          "smallest {smallest}, median {median}, largest {largest} · **image tokens per row** "
                          "min {tokens_min}, mean {tokens_mean}, max {tokens_max} (pixels {min_pixels}–{max_pixels})",
                          "**图片** {rows} 行共 {total} 张 · **每行** 平均 {mean}，最多 {max} · **尺寸** 最小 {smallest}，"
                          "中位 {median}，最大 {largest} · **每行图片 token 数** 最小 {tokens_min}，平均 {tokens_mean}，"
                          "最大 {tokens_max}（像素 {min_pixels}–{max_pixels}）"),
}
