"""Robust readers for what simulated people write: ratings, choices, preferences.

Each returns None when the text does not say, never a default: the caller flags the
failure and applies its env's parse-error policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "zero": 0}
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(_WORDS) + r")"


def _num(tok: str) -> float:
    tok = tok.lower()
    return float(_WORDS[tok]) if tok in _WORDS else float(tok)


def parse_rating(text: str, lo: int = 1, hi: int = 5) -> float | None:
    """The rating in ``text`` on the scale [lo, hi], or None.

    Reads, in order of trust: ``Rating: 4``, ``4/5``, ``4 out of 5``, ``4 stars``, stars
    ``★★★★``, then a lone in-range number (``"I'd give it a 4."``). A number outside
    the scale, or several different lone numbers, is not a rating.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    t = text.lower()
    patterns = (
        rf"(?:rating|score|rate|grade)\s*(?:is|of|:|=|-)?\s*\**\s*{_NUM}\b(?!\s*\.\s*\d)",
        rf"\b{_NUM}\s*/\s*{hi}\b",
        rf"\b{_NUM}\s+out\s+of\s+{hi}\b",
        rf"\b{_NUM}\s+stars?\b",
    )
    for pat in patterns:
        m = re.search(pat, t)
        if m:
            v = _num(m.group(1))
            return v if lo <= v <= hi else None
    stars = t.count("★")
    if stars and lo <= stars <= hi:
        return float(stars)
    lone = {_num(x) for x in re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)(?!\.?\d)", t)}
    lone |= {float(_WORDS[w]) for w in re.findall(r"\b(" + "|".join(_WORDS) + r")\b", t)}
    in_range = {v for v in lone if lo <= v <= hi}
    if len(in_range) == 1 and len(lone) == 1:
        return in_range.pop()
    return None


def parse_choice(text: str, labels: Sequence[str], keyword: str | None = None) -> str | None:
    """The one label of ``labels`` that ``text`` picks, or None.

    With ``keyword`` (e.g. ``"BUY"``), a label right after it wins; otherwise the text
    must name exactly one label as a standalone token (``"B"``, ``"(B)"``, ``"option B"``).
    """
    if not isinstance(text, str):
        return None
    alt = "|".join(re.escape(label) for label in labels)
    if keyword:
        m = re.search(rf"\b{re.escape(keyword)}\b\W*(?:option|item|product)?\s*\(?({alt})\b", text, re.IGNORECASE)
        if m:
            hit = m.group(1)
            return next(label for label in labels if label.lower() == hit.lower())
    found = {m.group(1) for m in re.finditer(rf"(?<![\w'])\(?({alt})\)?(?![\w'])", text)}
    return found.pop() if len(found) == 1 else None


def parse_preference(text: str, labels: Sequence[str] = ("A", "B")) -> int | None:
    """Index of the preferred response among ``labels``, or None."""
    label = parse_choice(text, labels, keyword="prefer") or parse_choice(text, labels)
    return None if label is None else list(labels).index(label)
