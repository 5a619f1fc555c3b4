"""Texts whose entities are known: the tiny test models are trained to tag export.synthetic.LEXICON."""

from __future__ import annotations

from export.synthetic import FILLER, LEXICON

TYPE_OF = {word: entity_type for entity_type, words in LEXICON.items() for word in words}

# Each awkward case of the serving issue stands right next to a known entity.
AWKWARD_TEXTS = [
    "张三在北京的清华大学读书。",
    "😀张三😀去了北京👨\u200d👩",
    "Ｆｕｌｌ李四ＡＢＣ上海",
    "e\u0301张三e\u0301",
    "\u200b北京\u200b联合国\u200b",
    "  张三\t李四\n上海  ",
    "2024年王小明在Microsoft工作",
    "𠀀长江𠀀",
    "欧阳娜娜\u0000乌鲁木齐\u0007微软公司",
    "©清华大学©",
    "Hello Microsoft, hello 联合国!",
]


def expected_entities(text: str) -> list[tuple[str, int, int]]:
    """(type, start, end) of every lexicon word in ``text``, longest match first, left to right."""
    found, i = [], 0
    words = sorted(TYPE_OF, key=len, reverse=True)
    while i < len(text):
        for word in words:
            if text.startswith(word, i):
                found.append((TYPE_OF[word], i, i + len(word)))
                i += len(word)
                break
        else:
            i += 1
    return found


def long_text_with_boundary_entities(n_chars: int = 2000, every: int = 37) -> str:
    """One token per character; a known entity every ``every`` characters, so some straddle each window edge."""
    filler = "".join(c for c in FILLER if len(c) == 1 and "\u4e00" <= c <= "\u9fff")
    names = [w for w in TYPE_OF if not w.isascii()]
    out, k = [], 0
    while len(out) < n_chars:
        if len(out) % every == every - 1:
            out.extend(names[k % len(names)])
            k += 1
        else:
            out.append(filler[len(out) % len(filler)])
    return "".join(out)
