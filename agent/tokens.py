"""Output token estimate for responses that carry no usage object.

This is an estimate, and records that use it set output_tokens_estimated. It is a rule
of thumb, not a tokenizer: about four characters per token for Latin-script text, and
one token per CJK character (Chinese, Japanese kana and kanji, Korean hangul).
Providers' tokenizers differ, so the estimate can be off by tens of percent.
"""

from __future__ import annotations

import math
import re

_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]"
)
LATIN_CHARS_PER_TOKEN = 4.0


class TokenEstimator:
    """Count characters as text arrives and estimate the tokens they make up."""

    def __init__(self) -> None:
        self.cjk_chars = 0
        self.other_chars = 0

    def add(self, text: str) -> None:
        """Count one piece of generated text."""
        cjk = len(_CJK.findall(text))
        self.cjk_chars += cjk
        self.other_chars += len(text) - cjk

    def estimate(self) -> int:
        """Return the estimated token count of everything added so far."""
        return self.cjk_chars + math.ceil(self.other_chars / LATIN_CHARS_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of one text."""
    estimator = TokenEstimator()
    estimator.add(text)
    return estimator.estimate()
