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
    """Collect text as it arrives and estimate the tokens it makes up.

    Counting is deferred to estimate(), because most responses carry usage and never
    need the estimate. The counts add up over pieces, so counting the joined pieces
    once gives the same estimate as counting each piece. Pending text is counted and
    dropped every PENDING_MAX_CHARS characters, to bound the memory a long response
    holds.
    """

    __slots__ = ("_cjk_chars", "_other_chars", "_pending", "_pending_chars")

    PENDING_MAX_CHARS = 65_536

    def __init__(self) -> None:
        self._cjk_chars = 0
        self._other_chars = 0
        self._pending: list[str] = []
        self._pending_chars = 0

    def add(self, text: str) -> None:
        """Keep one piece of generated text for the estimate."""
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars > self.PENDING_MAX_CHARS:
            self._count_pending()

    def estimate(self) -> int:
        """Return the estimated token count of everything added so far."""
        self._count_pending()
        return self._cjk_chars + math.ceil(self._other_chars / LATIN_CHARS_PER_TOKEN)

    def _count_pending(self) -> None:
        text = "".join(self._pending)
        cjk = 0 if text.isascii() else len(_CJK.findall(text))
        self._cjk_chars += cjk
        self._other_chars += len(text) - cjk
        self._pending = []
        self._pending_chars = 0


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of one text."""
    estimator = TokenEstimator()
    estimator.add(text)
    return estimator.estimate()
