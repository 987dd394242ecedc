"""What the data checks say (trainer/data/: rows, formats, readers, validate), in English and
Chinese: message id -> (English, Chinese), with the same {fields}. Part of the trainer's catalogue,
trainer/messages.py, which holds the rules and the Message type. What is wrong with an image's
bytes is said in models/image_check.py (the model server says it too) and merged in here."""

from models.image_check import IMAGE_MESSAGES

DATA_MESSAGES: dict[str, tuple[str, str]] = {
    **IMAGE_MESSAGES,
    # -- one row's fields (trainer/data/rows.py)
    "row-missing": ("required field is missing", "缺少必填字段"),
    "row-expected-string": ("expected a string, got {value}", "应为字符串，实际为 {value}"),
    "row-expected-strings": ("expected a string or a list of strings, got {value}",
                             "应为字符串或字符串列表，实际为 {value}"),
    "row-surrogate": ("unpaired surrogate \\u{code} at character {position}: not valid Unicode text",
                      "第 {position} 个字符是未配对的代理码位 \\u{code}，不是有效的文本"),
    "row-empty-turn": ("empty {role} turn", "{role}轮次为空"),
    "unit-turn": ("turn", "轮次"),
    "unit-turns": ("turns", "轮次"),
    "unit-assistant-turn": ("assistant turn", "助手轮次"),
    "unit-assistant-turns": ("assistant turns", "助手轮次"),
    "labels-not-list": ("expected a list of 0/1 values, one per {unit}, got {value}",
                        "应为 0/1 值的列表，每个{unit}一个，实际为 {value}"),
    "labels-not-01": ("expected 0 or 1, got {value}", "应为 0 或 1，实际为 {value}"),
    "labels-count-one": ("has {n} values but there is {count} {units}; give one 0/1 per {unit}",
                         "有 {n} 个值，但只有 {count} 个{units}；每个{unit}给一个 0/1"),
    "labels-count": ("has {n} values but there are {count} {units}; give one 0/1 per {unit}",
                     "有 {n} 个值，但有 {count} 个{units}；每个{unit}给一个 0/1"),
    # models/chat_template.py's TemplateError says which turn (the text is models', so it stays English)
    "row-template": ("{error}", "对话模板渲染这一行的方式无法切分出各轮次，无法确定模型要学习哪些词元（{error}）"),
    "labels-all-zero": ("every turn has label 0: there is nothing to train on",
                        "所有轮次的标签都是 0：没有可训练的内容"),
    # -- the formats (trainer/data/formats.py)
    "format-is-system": ("is_system is 1, so src[0] is the system prompt, but no prompt follows it",
                         "is_system 为 1，src[0] 是系统提示，但其后没有提示"),
    "format-src-empty": ("empty list: at least one prompt is needed", "列表为空：至少需要一个提示"),
    "format-tgt-count-one": ("has {n} item but {src} has {m}; give one reply per prompt",
                             "有 {n} 项，但 {src} 有 {m} 项；每个提示需要一个回答"),
    "format-tgt-count": ("has {n} items but {src} has {m}; give one reply per prompt",
                         "有 {n} 项，但 {src} 有 {m} 项；每个提示需要一个回答"),
    "format-dpo-tgt-count-one": ("has {n} item but a DPO row needs one fewer than {src} ({m}): the replies "
                                 "before the last prompt",
                                 "有 {n} 项，但 DPO 行需要比 {src} 少一项（{m}）：即最后一个提示之前的回答"),
    "format-dpo-tgt-count": ("has {n} items but a DPO row needs one fewer than {src} ({m}): the replies "
                             "before the last prompt",
                             "有 {n} 项，但 DPO 行需要比 {src} 少一项（{m}）：即最后一个提示之前的回答"),
    "format-response-not-list": ("expected a list of the two candidate replies, got {value}",
                                 "应为两个候选回答的列表，实际为 {value}"),
    "format-response-count": ("expected 2 candidate replies, got {n}", "应有 2 个候选回答，实际为 {n} 个"),
    "format-response-multi": ("expected one reply (a string or a one-item list), got a list of {n}: a reply "
                              "spanning several turns (a session-level response) is not supported; put the turns "
                              "before the compared reply in the conversation",
                              "应为一个回答（字符串或只含一项的列表），实际为含 {n} 项的列表：不支持跨多个轮次的回答"
                              "（会话级回答）；请把被比较的回答之前的轮次放进对话中"),
    "format-sort-not-list": ("expected a list of two ranks such as [1, 0], got {value}",
                             "应为两个排名组成的列表（如 [1, 0]），实际为 {value}"),
    "format-sort-mismatch": ("has {n} ranks but {response} has {m} replies; give one rank per reply",
                             "有 {n} 个排名，但 {response} 有 {m} 个回答；每个回答需要一个排名"),
    "format-sort-count": ("expected 2 ranks, got {n}", "应有 2 个排名，实际为 {n} 个"),
    "format-expected-number": ("expected a number, got {value}", "应为数字，实际为 {value}"),
    "format-sort-same": ("both replies have the same rank {sort}; the preferred one must be larger",
                         "两个回答的排名相同（{sort}）；更好的回答排名应更大"),
    "format-identical": ("chosen and rejected replies are identical; a preference pair needs two different "
                         "replies", "选中回答与拒绝回答相同；偏好对需要两个不同的回答"),
    "format-history-not-list": ("expected a list of [question, answer] pairs, got {value}",
                                "应为 [问题, 回答] 对的列表，实际为 {value}"),
    "format-history-pair": ("expected a [question, answer] pair, got {value}", "应为 [问题, 回答] 对，实际为 {value}"),
    "format-reply-missing": ("required field is missing: a preference row needs both {chosen} and {rejected}",
                             "缺少必填字段：偏好行需要同时有 {chosen} 和 {rejected}"),
    "format-reply-role": ("expected the assistant's reply (role {assistant} or {gpt}), got {value}",
                          "应为助手的回答（角色 {assistant} 或 {gpt}），实际为 {value}"),
    "format-pair-differ": ("must be the same conversation as {chosen} up to its last turn (the reply compared); "
                           "the two differ at turn {turn}",
                           "必须与 {chosen} 是同一段对话，只有最后一轮（被比较的回答）不同；两者在第 {turn} 轮不同"),
    "format-pair-lengths": ("has {n} turns but {chosen} has {m}: the two must be the same conversation up to "
                            "their last turn (the reply compared)",
                            "有 {n} 个轮次，但 {chosen} 有 {m} 个：两者必须是同一段对话，只有最后一轮（被比较的回答）不同"),
    "format-reply-calls": ("a reply that calls tools cannot be one side of a preference pair here: give the "
                           "reply as text (calls may appear in the conversation before it)",
                           "偏好对的一方不能是调用工具的回答：请以文本给出回答（调用可以出现在它之前的对话中）"),
    "format-reply-type": ("expected a string or a {shape} object, got {value}",
                          "应为字符串或 {shape} 对象，实际为 {value}"),
    "format-turns-not-list": ("expected a list of {shape} objects, got {value}", "应为 {shape} 对象的列表，实际为 {value}"),
    "format-turns-empty": ("empty list: at least one turn is needed", "列表为空：至少需要一个轮次"),
    "format-turn-not-object": ("expected an object {shape}, got {value}", "应为对象 {shape}，实际为 {value}"),
    "format-unknown-role": ("unknown role {role}; expected {expected}", "未知角色 {role}；应为 {expected}"),
    "format-roles-messages": ("{system}, {user}, {assistant} or {tool}", "{system}、{user}、{assistant} 或 {tool}"),
    "format-roles-sharegpt": ("{human}, {gpt}, {function_call}, {observation} or {system} (or {user}, {assistant})",
                              "{human}、{gpt}、{function_call}、{observation} 或 {system}（也可用 {user}、{assistant}）"),
    "format-after-tool": ("expected {assistant} turn here, answering the tool results before it, got {got}",
                          "此处应为 {assistant} 轮次（回应前面的工具结果），实际为 {got}"),
    "format-system-with-top": ("a system turn is not allowed when the top-level {system} field is given",
                               "已给出顶层 {system} 字段时，不允许再有系统轮次"),
    "format-system-first": ("a system turn is allowed only as the first turn", "系统轮次只能是第一个轮次"),
    "format-alternate": ("expected {expected} turn here, got {got}: {user} and {assistant} turns must "
                         "alternate, starting with {user} (after an optional system turn)",
                         "此处应为 {expected} 轮次，实际为 {got}：{user} 与 {assistant} 轮次必须交替，"
                         "从 {user} 开始（之前可有一个系统轮次）"),
    "format-prompt-end": ("the prompt must end with {turn} turn; the replies go in {chosen} and {rejected}",
                          "提示必须以 {turn} 轮次结束；回答应放在 {chosen} 和 {rejected} 中"),
    "format-conversation-end": ("the conversation must end with {turn} turn (the reply to train on), but it "
                                "ends with {last} turn",
                                "对话必须以 {turn} 轮次结束（即要训练的回答），但它以 {last} 轮次结束"),
    # -- function calling (trainer/data/tool_rows.py)
    "tool-not-json": ("{what} is not valid JSON: {error} at character {position}",
                      "{what}不是有效的 JSON：第 {position} 个字符处{error}"),
    "tool-what-tools": ("the tools list (of {shape} objects)", "工具列表（由 {shape} 对象组成）"),
    "tool-what-arguments": ("the arguments (a JSON object)", "参数（JSON 对象）"),
    "tool-what-call": ("the function call ({shape}, or a list of them)", "函数调用（{shape}，或由它们组成的列表）"),
    "tool-list-not-list": ("expected a list of {shape} objects (or its JSON text), got {value}",
                           "应为 {shape} 对象的列表（或其 JSON 文本），实际为 {value}"),
    "tool-type": ("expected type {function}, got {value}", "类型应为 {function}，实际为 {value}"),
    "tool-name-empty": ("the function's name is empty", "函数名为空"),
    "tool-declared-twice": ("function {name} is declared twice; each tool needs a name of its own",
                            "函数 {name} 声明了两次；每个工具的名称必须不同"),
    "tool-parameters": ("expected the parameters' JSON schema (an object), got {value}",
                        "应为参数的 JSON 模式（对象），实际为 {value}"),
    "tool-call-undeclared": ("calls function {name}, which the row's {tools} do not declare (declared: {declared})",
                             "调用了函数 {name}，但这一行的 {tools} 没有声明它（已声明：{declared}）"),
    "tool-arguments-object": ("expected the arguments as a JSON object (or its JSON text), got {value}",
                              "参数应为 JSON 对象（或其 JSON 文本），实际为 {value}"),
    "tool-calls-empty": ("empty list: at least one call is needed", "列表为空：至少需要一个调用"),
    "tool-calls-role": ("only an assistant turn calls tools; this turn's role is {role}",
                        "只有助手轮次可以调用工具；这个轮次的角色是 {role}"),
    "tool-call-id-twice": ("call id {id} is used twice; each call needs an id of its own so that its result can "
                           "name it", "调用 id {id} 用了两次；每个调用需要各自的 id，工具结果才能指明回应的是哪个调用"),
    "tool-call-unanswered": ("the call of {name} ({call}) has no result: a tool turn answering each call must "
                             "follow the turn that makes it",
                             "对 {name} 的调用（{call}）没有结果：每个调用之后都必须有回应它的工具轮次"),
    "tool-result-no-call": ("a tool result with no call to answer: it must follow an assistant turn that calls a "
                            "tool, one result per call", "工具结果没有可回应的调用：它必须跟在调用工具的助手轮次之后，"
                                                        "每个调用一个结果"),
    "tool-result-unknown-id": ("no call awaiting a result has id {id} (awaiting: {ids})",
                               "没有等待结果的调用的 id 是 {id}（等待中：{ids}）"),
    "tool-result-no-id": ("required field is missing: the calls awaiting results have ids ({ids}); name the one "
                          "this result answers", "缺少必填字段：等待结果的调用带有 id（{ids}）；请指明这个结果回应的是哪一个"),
    "tool-result-name": ("names function {name}, but the call it answers is to {call}",
                         "指明的函数是 {name}，但它回应的调用是 {call}"),
    "format-unknown-name": ("unknown format {format}; supported: auto, {formats}", "未知格式 {format}；支持：auto、{formats}"),
    "format-not-object": ("expected an object with the fields of format {format}, got {value}",
                          "应为包含 {format} 格式字段的对象，实际为 {value}"),
    "format-invalid-row": ("invalid row", "无效行"),
    "format-detect-no-object": ("no row among the first ones is a JSON object; the first is {value}",
                                "前几行中没有 JSON 对象；第一行是 {value}"),
    "format-detect-fields": ("fields in the first row: {fields}", "第一行的字段：{fields}"),
    "format-unknown": ("unknown data format: no supported format matches ({seen}).\nSupported formats and their "
                       "required fields:\n{formats}",
                       "未知的数据格式：没有匹配的受支持格式（{seen}）。\n受支持的格式及其必填字段：\n{formats}"),
    "format-line": ("  {name} [{kind}]: {required}{optional}", "  {name} [{kind}]：{required}{optional}"),
    "format-optional": (" (optional: {fields})", "（可选：{fields}）"),
    "format-cannot-detect": ("{path}: cannot detect the data format: the first rows cannot be parsed",
                             "{path}：无法识别数据格式：前几行无法解析"),
    # -- reading files (trainer/data/readers.py)
    "read-unsupported-ext": ("unsupported file extension {ext}; supported: {supported}",
                             "不支持的文件扩展名 {ext}；支持：{supported}"),
    "read-no-ext": ("'(none)'", "（无）"),
    "read-not-found": ("file not found", "文件不存在"),
    "read-not-file": ("not a regular file", "不是普通文件"),
    "read-empty": ("file is empty", "文件为空"),
    "read-empty-blank": ("file is empty (only blank lines)", "文件为空（只有空行）"),
    "read-empty-whitespace": ("file is empty (only whitespace)", "文件为空（只有空白字符）"),
    "read-utf16": ("the file is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8; re-save it as UTF-8",
                   "文件是 UTF-16 编码（以 UTF-16 字节顺序标记开头），不是 UTF-8；请另存为 UTF-8"),
    "read-not-utf8": ("not UTF-8: invalid byte 0x{byte} at line {line}, byte {position}; re-save the file as UTF-8",
                      "不是 UTF-8：第 {line} 行有无效字节 0x{byte}（第 {position} 字节）；请将文件另存为 UTF-8"),
    "read-nul": ("NUL byte at line {line}: the file looks like UTF-16 or binary data, not UTF-8 text; re-save it "
                 "as UTF-8", "第 {line} 行有零字节 0x00：文件看起来是 UTF-16 或二进制数据，而不是 UTF-8 文本；"
                             "请另存为 UTF-8"),
    "read-json-column": ("malformed JSON at column {column}: {error}{hint}", "JSON 格式错误（第 {column} 列）：{error}{hint}"),
    "read-hint-document": (" (this looks like a pretty-printed JSON document; save it with a .json extension)",
                           "（这像是分行排版的 JSON 文档；请以 .json 扩展名保存）"),
    "read-hint-cr": (" (the file ends its lines with a bare carriage return, \\r, as old Mac files do; save it "
                     "with \\n line ends)", "（文件各行以单独的回车符 \\r 结尾，这是旧式苹果电脑文件的做法；"
                                            "请改用 \\n 换行）"),
    "read-json-at": ("malformed JSON at line {line}, column {column}: {error}",
                     "JSON 格式错误（第 {line} 行第 {column} 列）：{error}"),
    "read-json-decode": ("cannot decode the JSON value: {reason}", "无法解码 JSON 值：{reason}"),
    "read-nested": ("nested too deeply", "嵌套过深"),
    "read-int-digits": ("an integer of {digits} digits; at most {limit} can be read",
                        "整数有 {digits} 位；最多只能读取 {limit} 位"),
    "read-expected": ("expected {what}, got {got}", "应为 {what}，实际为 {got}"),
    "read-colon-after-key": ("':' after a key", "键后的 ':'"),
    "read-after-array": ("unexpected content after the top-level array", "顶层数组之后有多余内容"),
    "read-after-object": ("unexpected content after the top-level object", "顶层对象之后有多余内容"),
    "read-empty-array": ("the JSON array is empty: no records", "JSON 数组为空：没有记录"),
    "read-array-separator": ("expected ',' or ']' after an array element, got {got}",
                             "数组元素之后应为 ',' 或 ']'，实际为 {got}"),
    "read-object-separator": ("expected ',' or '}}' in the top-level object, got {got}",
                              "顶层对象中应为 ',' 或 '}}'，实际为 {got}"),
    "read-object-key": ("expected a key string in the top-level object", "顶层对象中应为键字符串"),
    "read-csv-header-empty": ("the CSV header row (line 1) is empty", "CSV 表头行（第 1 行）为空"),
    "read-csv-column-twice": ("the CSV header row (line 1) names column {column} twice",
                              "CSV 表头行（第 1 行）中列名 {column} 出现了两次"),
    "read-csv-malformed": ("malformed CSV: {error}", "CSV 格式错误：{error}"),
    "read-csv-near": ("malformed CSV near line {line}: {error}", "CSV 格式错误（第 {line} 行附近）：{error}"),
    "read-csv-cells": ("CSV row has {cells} cells but the header has {columns}",
                       "CSV 行有 {cells} 个单元格，但表头有 {columns} 列"),
    "read-csv-no-rows": ("the CSV file has a header row but no data rows", "CSV 文件只有表头行，没有数据行"),
    "read-parquet-unreadable": ("not a readable Parquet file: {error}", "不是可读取的 Parquet 文件：{error}"),
    "read-parquet-after": ("cannot read the Parquet file after row {row}: {error}",
                           "第 {row} 行之后无法读取 Parquet 文件：{error}"),
    "read-parquet-no-rows": ("the Parquet file has no rows", "Parquet 文件没有数据行"),
    # what Python's json module says, by its fixed messages
    "json-expecting-value": ("Expecting value", "缺少值"),
    "json-expecting-comma": ("Expecting ',' delimiter", "缺少分隔符 ','"),
    "json-expecting-colon": ("Expecting ':' delimiter", "缺少分隔符 ':'"),
    "json-expecting-name": ("Expecting property name enclosed in double quotes", "缺少用双引号括起的属性名"),
    "json-unterminated": ("Unterminated string starting at", "字符串未结束，起始于"),
    "json-control": ("Invalid control character at", "无效的控制字符，位于"),
    "json-escape": ("Invalid \\escape", "无效的 \\ 转义"),
    "json-unicode-escape": ("Invalid \\uXXXX escape", "无效的 \\uXXXX 转义"),
    "json-extra": ("Extra data", "多余的数据"),
    "json-extra-value": ("Extra data after the JSON value", "JSON 值之后有多余的数据"),
    # -- whole-file reports (trainer/data/validate.py)
    "report-rows-one": ("{rows_total} row: {rows_valid} valid, {rows_invalid} invalid{skipped}",
                        "共 {rows_total} 行：{rows_valid} 行有效，{rows_invalid} 行无效{skipped}"),
    "report-rows": ("{rows_total} rows: {rows_valid} valid, {rows_invalid} invalid{skipped}",
                    "共 {rows_total} 行：{rows_valid} 行有效，{rows_invalid} 行无效{skipped}"),
    "report-skipped": (" ({n} skipped)", "（跳过 {n} 行）"),
    "report-refused": ("{path} (format {format}): {summary}; {reason}", "{path}（格式 {format}）：{summary}；{reason}"),
    "report-no-valid": ("no valid rows", "没有有效行"),
    "report-invalid-refuse": ("invalid rows refuse the file (skip_invalid would use the {n} valid rows)",
                              "有无效行，文件被拒绝（开启 skip_invalid 可只用其中 {n} 行有效数据）"),
    # -- images of a row (trainer/data/images.py)
    "image-not-string": ("expected an image path or a data:image/...;base64, URL as a string, got {value}",
                         "应为图片路径或 data:image/...;base64, 形式的字符串，实际为 {value}"),
    "image-empty": ("empty image reference: give the image's path", "图片引用为空：请给出图片路径"),
    "image-http": ("{scheme} URLs are not downloaded: put the image in the dataset's folder and give its path, or "
                   "embed it as a data:image/...;base64, URL",
                   "不会下载 {scheme} 链接的图片：请把图片放进数据集所在的文件夹并给出其路径，或以 "
                   "data:image/...;base64, 的形式内嵌"),
    "image-scheme": ("unsupported URL scheme {scheme}: give a path relative to the data file, an absolute path "
                     "inside its folder, or a data:image/...;base64, URL",
                     "不支持的链接协议 {scheme}：请给出相对于数据文件的路径、其文件夹内的绝对路径，或 "
                     "data:image/...;base64, 形式的内嵌图片"),
    "image-escapes": ("the image path {path} leads outside the dataset's folder {folder}; images must be inside it",
                      "图片路径 {path} 指向数据集文件夹 {folder} 之外；图片必须位于该文件夹内"),
    "image-absolute-outside": ("the absolute path {path} is outside the dataset's folder {folder}; images must be "
                               "inside it", "绝对路径 {path} 不在数据集文件夹 {folder} 内；图片必须位于该文件夹内"),
    "image-link-outside": ("{path} is a symbolic link to {target}, outside the dataset's folder; images must be "
                           "inside it", "{path} 是指向 {target} 的符号链接，位于数据集文件夹之外；图片必须位于该文件夹内"),
    "image-missing": ("image file not found: {path} (looked for {resolved})",
                      "图片文件不存在：{path}（查找位置：{resolved}）"),
    "image-not-file": ("{path} is not a regular file", "{path} 不是普通文件"),
    "image-too-small": ("{path} is {width}x{height} = {pixels} pixels, under vl.min_pixels ({limit}); use a larger "
                        "image or lower vl.min_pixels",
                        "{path} 为 {width}x{height} = {pixels} 像素，小于 vl.min_pixels（{limit}）；请使用更大的图片，"
                        "或调低 vl.min_pixels"),
    "image-too-large": ("{path} is {width}x{height} = {pixels} pixels, over vl.max_pixels ({limit}); scale it down "
                        "or raise vl.max_pixels",
                        "{path} 为 {width}x{height} = {pixels} 像素，大于 vl.max_pixels（{limit}）；请缩小图片，"
                        "或调高 vl.max_pixels"),
    "image-shape": ("{path} is {width}x{height} = {pixels} pixels and cannot be resized for the model: {error}",
                    "{path} 为 {width}x{height} = {pixels} 像素，无法缩放到模型所需的尺寸：{error}"),
    "image-write": ("cannot write the decoded image into {folder} ({error})", "无法把解码后的图片写入 {folder}（{error}）"),
    # -- rows with images (trainer/data/vl_formats.py)
    "image-both": ("images are given both as image_url parts and in {images}; use one of them",
                   "图片同时以 image_url 内容片段和 {images} 字段给出；请只用其中一种"),
    "image-list": ("expected a list of image paths, got {value}", "应为图片路径列表，实际为 {value}"),
    "image-sft-only": ("images are taken in the SFT formats messages and sharegpt; a {format} row cannot have them",
                       "只有 SFT 格式 messages 和 sharegpt 的行可以带图片；{format} 格式的行不能带"),
    "image-count": ("{placeholder} placeholders in the text: {n}; images given: {m}; each image needs one "
                    "{placeholder} where it goes in the text, in the same order",
                    "文本中的 {placeholder} 占位符：{n} 个；给出的图片：{m} 张；每张图片都需要在文本中它所在的位置"
                    "按相同顺序对应一个 {placeholder}"),
    "vl-video": ("videos are not supported: ERNIE Studio trains vision-language models on images only (its model "
                 "path does not run video frames); remove this row, or give the frames as images",
                 "不支持视频：ERNIE Studio 只用图片训练视觉语言模型（其模型路径不运行视频帧）；请删除这一行，"
                 "或把视频帧作为图片给出"),
    "vl-tag": ("unknown tag {tag}; expected {mask} (the prompt) or {no_mask} (the reply to learn)",
               "未知标签 {tag}；应为 {mask}（提示）或 {no_mask}（要学习的回答）"),
    "vl-tools": ("tool calls and tool responses are not supported", "不支持工具调用和工具返回"),
    "vl-index-type": ("expected an integer index into text_info, got {value}", "应为 text_info 中的整数下标，实际为 {value}"),
    "vl-index": ("{index} is not an index of text_info (0 to {last})", "{index} 不是 text_info 的有效下标（0 到 {last}）"),
    "vl-image-in-reply": ("{index} puts the image inside a reply (text_info[{index}] follows another no_mask "
                          "text); an image goes with a prompt",
                          "{index} 把图片放进了回答中间（text_info[{index}] 接在另一段 no_mask 文本之后）；图片应属于提示"),
    "vl-first-reply": ("the first text is a reply ({no_mask}) with no prompt or image before it; start with a "
                       "{mask} text", "第一段文本是回答（{no_mask}），其前没有提示或图片；请以 {mask} 文本开始"),
    "vl-last-prompt": ("the last text is a prompt ({mask}); the conversation must end with a {no_mask} text, the "
                       "reply to learn", "最后一段文本是提示（{mask}）；对话必须以 {no_mask} 文本（要学习的回答）结束"),
    "vl-parts-empty": ("empty list of content parts", "内容片段列表为空"),
    "vl-part-type": ("unknown content part type {type}; expected {text} or {image_url}",
                     "未知的内容片段类型 {type}；应为 {text} 或 {image_url}"),
    # -- zip uploads (trainer/data/dataset_zip.py)
    "zip-unreadable": ("{name} is not a readable zip archive ({error})", "{name} 不是可读取的 zip 压缩包（{error}）"),
    "zip-too-many": ("{name} holds {n} entries, more than the limit of {limit}", "{name} 含 {n} 个条目，超过上限 {limit}"),
    "zip-dot-dot": ("{name}: entry {entry} has '..' in its path and would land outside the dataset's folder; "
                    "refused", "{name}：条目 {entry} 的路径含有 '..'，会落到数据集文件夹之外；已拒绝"),
    "zip-absolute": ("{name}: entry {entry} has an absolute path; refused", "{name}：条目 {entry} 是绝对路径；已拒绝"),
    "zip-link": ("{name}: entry {entry} is a symbolic link; refused", "{name}：条目 {entry} 是符号链接；已拒绝"),
    "zip-encrypted": ("{name}: entry {entry} is encrypted; upload a zip without a password",
                      "{name}：条目 {entry} 已加密；请上传没有密码的 zip"),
    "zip-twice": ("{name}: entry {entry} is in the zip twice; refused", "{name}：条目 {entry} 在压缩包中出现了两次；已拒绝"),
    "zip-bomb-total": ("{name} would unpack to {size}, over the limit of {limit}: refused as a possible zip bomb",
                       "{name} 解压后为 {size}，超过上限 {limit}：可能是压缩炸弹，已拒绝"),
    "zip-bomb-ratio": ("{name}: entry {entry} is compressed {ratio}:1, over the limit of {limit}:1: refused as a "
                       "possible zip bomb",
                       "{name}：条目 {entry} 的压缩比为 {ratio}:1，超过上限 {limit}:1：可能是压缩炸弹，已拒绝"),
    "zip-damaged": ("{name}: entry {entry} cannot be unpacked ({error})", "{name}：条目 {entry} 无法解压（{error}）"),
    "zip-no-data": ("{name} holds no data file ({supported})", "{name} 中没有数据文件（{supported}）"),
    "zip-several-data": ("{name} holds several data files ({files}); put one data file and its images in a zip",
                         "{name} 中有多个数据文件（{files}）；每个 zip 只放一个数据文件及其图片"),
    "zip-outside": ("{name}: entry {entry} is outside the folder of the data file {data}; image paths are relative "
                    "to the data file, so keep the images in its folder or below",
                    "{name}：条目 {entry} 不在数据文件 {data} 所在的文件夹内；图片路径相对于数据文件，请把图片放在该文件夹"
                    "或其子文件夹中"),
}
