"""The form of a text prompt guards match on: look-alike characters folded to the ASCII letter,
digit or sign they imitate, invisible characters dropped. Only used when a regex guard is
configured; masks are applied to the original text through an index map.

Per character, in this order:

1. JSON ``\\uXXXX`` escapes (surrogate pairs too) are read as the character they encode: a tool
   call's arguments are JSON text, where ``\\u0073k-…`` spells ``sk-…``;
2. format characters (Unicode category Cf: zero-width space, joiners, word joiner, BOM, soft
   hyphen, bidi controls) are dropped; the tag characters U+E0020..E007E, which hide ASCII text
   ("ASCII smuggling"), are read as that ASCII;
3. decimal digits of every script (Arabic-Indic, Devanagari, fullwidth, mathematical, ...) are
   read as ASCII digits;
4. NFKD (which maps what NFKC maps: fullwidth forms, ``＠``, ligatures, mathematical letters,
   circled and superscript forms, no-break and typographic spaces), with the generic combining
   marks dropped (U+0300..036F, U+1AB0..1AFF, U+1DC0..1DFF, U+20D0..20FF, U+FE20..FE2F: accents,
   strike-through and "Zalgo" marks); marks of a script's own (Indic vowel signs) are kept and the
   result recomposed with NFKC;
5. the confusables table below: Cyrillic, Greek and Armenian letters that are drawn like a Latin
   letter, the dashes and the ideographic full stop.

The table is deliberately small: it folds single characters to single characters that readers
take for the same letter. Unicode's full confusables list (TR39) also maps characters to
sequences (``rn`` for ``m``) and across letters and digits (``O``/``0``, ``l``/``1``), which would
make guards match ordinary text. Scripts beyond these (Cherokee, Canadian syllabics, ...) are
not folded.
"""

from __future__ import annotations

import re
import unicodedata

# Step 5: look-alikes (same case as the Latin letter they imitate).
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ѐ": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j",
    "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "ү": "y",
    "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g",
    "А": "A", "В": "B", "Е": "E", "Ѐ": "E", "Ё": "E", "Һ": "H", "І": "I", "Ї": "I", "Ј": "J",
    "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Ү": "Y",
    "Х": "X", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian
    "օ": "o", "ս": "u", "ո": "n", "հ": "h", "ց": "g", "Օ": "O", "Ս": "U",
    # Latin letters drawn like another Latin letter
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ʏ": "y",
    # Signs: dashes and minus to "-", the ideographic full stop to "."
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "⁃": "-",
    "。": ".", "｡": ".",
}  # fmt: skip

_GENERIC_MARKS = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
_TAGS = (0xE0020, 0xE007E)
_ESCAPE = re.compile(r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})")


def _generic_mark(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _GENERIC_MARKS)


def fold_char(ch: str) -> str:
    """Steps 2-5 for one character (what it reads as; '' when it is invisible)."""
    cp = ord(ch)
    category = unicodedata.category(ch)
    if category == "Cf":
        return chr(cp - 0xE0000) if _TAGS[0] <= cp <= _TAGS[1] else ""
    if category == "Nd":
        return str(unicodedata.decimal(ch))
    mapped = CONFUSABLES.get(ch)
    if mapped is not None:
        return mapped
    parts = [c for c in unicodedata.normalize("NFKD", ch) if not _generic_mark(c)]
    folded = unicodedata.normalize("NFKC", "".join(parts))
    return "".join(CONFUSABLES.get(c, c) for c in folded)


# Characters remembered (a text of every code point must not grow the table without bound).
_TABLE_LIMIT = 50_000


class _FoldTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each character."""

    def __missing__(self, cp: int) -> str:
        folded = fold_char(chr(cp))
        if len(self) < _TABLE_LIMIT:
            self[cp] = folded
        return folded


FOLD = _FoldTable()


def _unescape(m: re.Match[str]) -> str:
    if m.group(3) is not None:
        return chr(int(m.group(3), 16))
    high, low = int(m.group(1), 16), int(m.group(2), 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def plain(text: str) -> bool:
    """True when folding cannot change ``text`` (ASCII without escapes: the common case, O(1)
    for the ASCII check)."""
    return text.isascii() and "\\u" not in text


def fold(text: str) -> str:
    """The folded text (no index map: enough to learn whether anything matches)."""
    if "\\u" in text:
        text = _ESCAPE.sub(_unescape, text)
    return text if text.isascii() else text.translate(FOLD)


class IndexMap:
    """The folded text with, for each of its characters, the span of the original text it came
    from; built only when a match was found in the folded text."""

    __slots__ = ("text", "starts", "ends", "length")

    def __init__(self, original: str) -> None:
        out: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        escapes = {m.start(): m for m in _ESCAPE.finditer(original)} if "\\u" in original else {}
        i = 0
        n = len(original)
        while i < n:
            m = escapes.get(i)
            if m is not None:
                ch, end = _unescape(m), m.end()
            else:
                ch, end = original[i], i + 1
            folded = ch if ch.isascii() else FOLD[ord(ch)]
            for c in folded:
                out.append(c)
                starts.append(i)
                ends.append(end)
            i = end
        self.text = "".join(out)
        self.starts = starts
        self.ends = ends
        self.length = n

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the folded span [start, end) (end > start)."""
        return self.starts[start], self.ends[end - 1]

    def original_offset(self, folded: int) -> int:
        """Where the folded position ``folded`` starts in the original text (the end for the
        folded text's end)."""
        return self.starts[folded] if folded < len(self.starts) else self.length
