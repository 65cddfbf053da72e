"""Generated completion text for simulated providers.

Completions are cut from a few short paragraphs, one token per streamed chunk. English
tokens are words with their leading space. When the last user message contains CJK
characters the completion is Chinese, one or two characters per token, so streams carry
multi-byte UTF-8 the way completions for Chinese prompts do.
"""

from __future__ import annotations

import random
from typing import Any

_ENGLISH_PARAGRAPHS = (
    "Latency to a language model API has three parts: the network path to the provider,"
    " the time the request waits in a queue, and the time the model needs to produce"
    " each token. Measuring from the network where the callers sit shows all three.",
    "A relay forwards the request to an upstream provider, so it adds one more network"
    " hop and one more queue. A good relay hides that cost behind a faster route; a busy"
    " one shows it as a longer time to first token.",
    "Streaming answers arrive as server-sent events. The first event often carries only"
    " the role, and the useful text starts a little later, which is why the time to the"
    " first token is counted from the first chunk with text.",
    "Under load a provider first slows down, then starts to answer with status 429 or"
    " 502. The rate at which errors begin is the practical capacity for your account.",
)

_CHINESE_PARAGRAPHS = (
    "大模型接口的延迟由三部分组成：网络路径、排队等待时间，以及模型逐个生成词元所需的时间。"
    "在调用方所在的网络里测量，才能看到完整的情况。",
    "中转服务把请求转发给上游提供商，因此多了一跳网络和一个队列。"
    "好的中转线路能用更快的路由弥补这部分开销，繁忙的线路则会让首字时间明显变长。",
    "流式回答以服务器推送事件的形式到达。第一个事件通常只包含角色，"
    "真正的文字稍后才出现，所以首字时间从第一个带文字的数据块开始计算。",
    "在高负载下，服务先是变慢，然后开始返回四二九或五零二错误。错误开始出现时的请求速率，就是账户的实际容量。",
)

_REASONING_ENGLISH = (
    " First I check what the question asks, then I list the parts of the answer and the"
    " order in which to explain them, keeping the reply short."
)
_REASONING_CHINESE = "先弄清问题问的是什么，再列出回答要点和讲解顺序，尽量简短地回答。"


def contains_cjk(text: str) -> bool:
    """Return True when the text contains a CJK ideograph or CJK punctuation."""
    return any("\u3000" <= char <= "\u303f" or "\u4e00" <= char <= "\u9fff" for char in text)


def last_user_text(messages: object) -> str:
    """Return the text of the last user message of an OpenAI or Anthropic message list."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message.get("content"))
    return ""


def all_message_text(messages: object) -> str:
    """Return the text of every message, joined, for prompt token estimates."""
    if not isinstance(messages, list):
        return ""
    return "\n".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))


def estimate_tokens(text: str) -> int:
    """Estimate a token count: one per CJK character, one per four other characters."""
    cjk = sum(1 for char in text if contains_cjk(char))
    other = len(text) - cjk
    return max(1, cjk + (other + 3) // 4)


def content_tokens(chinese: bool, count: int, rng: random.Random) -> list[str]:
    """Return count tokens of completion text, starting at a random paragraph."""
    paragraphs = _CHINESE_PARAGRAPHS if chinese else _ENGLISH_PARAGRAPHS
    start = rng.randrange(len(paragraphs))
    text = "".join(paragraphs[(start + i) % len(paragraphs)] for i in range(len(paragraphs)))
    tokens = _split_chinese(text) if chinese else _split_english(text)
    # Repeat the text when a profile requests more tokens than the paragraphs contain.
    while len(tokens) < count:
        tokens = tokens + tokens
    return tokens[:count]


def reasoning_tokens(chinese: bool, count: int) -> list[str]:
    """Return count tokens of reasoning text."""
    tokens = _split_chinese(_REASONING_CHINESE) if chinese else _split_english(_REASONING_ENGLISH)
    while len(tokens) < count:
        tokens = tokens + tokens
    return tokens[:count]


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _split_english(text: str) -> list[str]:
    words = text.split(" ")
    tokens = [words[0]] + [" " + word for word in words[1:]]
    return [token for token in tokens if token]


def _split_chinese(text: str) -> list[str]:
    # Alternate one- and two-character tokens, roughly what BPE vocabularies produce.
    tokens: list[str] = []
    position = 0
    width = 1
    while position < len(text):
        tokens.append(text[position : position + width])
        position += width
        width = 3 - width
    return tokens
