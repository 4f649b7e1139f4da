"""Language detection for the two languages the service knows (zh, en)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_lang(text: str) -> str:
    """``"zh"`` when Chinese characters carry the text, else ``"en"``.

    A Chinese character carries about as much as a short English word, so one CJK character counts
    as much as three Latin letters: "G60科创走廊在哪里" is Chinese, "What is the G60 corridor (G60科创走廊)?" is English.
    """
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk == 0:
        return "en"
    return "zh" if cjk * 3 >= latin else "en"


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))
