"""Readers of aligned parallel text from Debian packages: LibreOffice help and UI, Firefox UI, GNOME help, Debian
package descriptions. English paired with Spanish ("es") or Simplified Chinese ("zh").

scripts/install_data.sh downloads the packages (`apt-get download`, never installed) and extracts what is read
here under data/parallel/ (git-ignored). Each reader returns aligned pairs
`{"doc": "<source>:<document>", "source": <source>, "en": ..., <lang>: ...}` after `clean_pair`; a document (a
help page, a message catalogue, a description) is named the same for both languages, so one page's English falls
into the same split whichever language it is paired with. Parsing every page takes a while on a small machine:
the pairs are cached as JSON next to the extracted packages, keyed by package versions and READER_VERSION.
"""
from __future__ import annotations

import glob
import gzip
import json
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from tasks.splits import ROOT, DataMissing

PARALLEL = ROOT / "data" / "parallel"
EXTRACTED = PARALLEL / "x"  # one folder per package: x/<package>/... (plus x/<package>/.version)
APT_LISTS = PARALLEL / "apt-lists"  # Translation-en, -es, -zh_CN (not the summarization task's lists)
INSTALL = "run scripts/install_data.sh"
READER_VERSION = 5  # bump when a reader or clean_pair changes: the cached pairs are rebuilt

# Debian's and the projects' own names for the two languages
LANG = {"es": {"libreoffice": "es", "l10n": "es", "firefox": "es-ES", "gnome": "es", "debian": "es"},
        "zh": {"libreoffice": "zh-CN", "l10n": "zh_CN", "firefox": "zh-CN", "gnome": "zh_CN", "debian": "zh%5fCN"}}

# packages per source (the {lang} ones once per language); the English side of Firefox is in firefox-esr
PACKAGES = {
    "libreoffice-help": ["libreoffice-help-en-us", "libreoffice-help-{deb}"],
    "gnome-help": ["gnome-user-docs"],
    "libreoffice-ui": ["libreoffice-l10n-{deb}"],
    "firefox-ui": ["firefox-esr", "firefox-esr-l10n-{ffdeb}"],
}
DEB_LANG = {"es": {"deb": "es", "ffdeb": "es-es"}, "zh": {"deb": "zh-cn", "ffdeb": "zh-cn"}}
LICENSES = {"libreoffice-help": "MPL-2.0", "libreoffice-ui": "MPL-2.0", "firefox-ui": "MPL-2.0",
            "gnome-help": "CC-BY-SA-3.0", "debian-descriptions": "per package (Debian description translations, "
                                                                  "DDTP)"}

# ---------------------------------------------------------------------------------------------------- cleaning

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# what must not be left in a row: format placeholders, variables, markup, escapes, accelerators, menu paths, code
LEFTOVER = re.compile(
    r"%[-#0-9.]*[a-zA-Z]|%\d|\$[\[({\w]|(?<!\w)[$#](?!\w)|&[a-zA-Z#]|"  # placeholders: %s %1 $(ARG) $1 "$" # &amp;
    r"[{}<>\\~|=_]|"  # markup, escapes, accelerators, formulas, code identifiers
    r"[▸►→⇒]|\S - \S|"  # menu paths: "Edit - Track Changes", "Editar ▸ Cambios"
    r"https?:|www\.|@\w|\.(?:html?|xhp|ftl|png|svg)\b|\.\.\.\.|"  # addresses, file names, filler
    r"\b(?:PRODUCTNAME|officename)\b|[\x00-\x1f\x7f-\x9f\ufffd]")  # variables, control characters
ACCEL = [(re.compile(r"\s*[(（]\s*[~&_][A-Za-z0-9]\s*[)）]"), ""),  # Chinese UI: "打开(~O)"
         (re.compile(r"~(?=\w)"), "")]  # LibreOffice: "~Open"
BRACKETS = ("()", "[]", "«»", "「」", "（）", "“”", "《》")
# a sentence cut where an icon or a list followed ("On the Standard bar, click", "tools, e.g.")
DANGLING = re.compile(r"\b(?:click|choose|select|press|the|a|an|to|of|and|or|with|e\.g\.|i\.e\.)$", re.I)
EN_WORDS = set("the and with you your this that which would should from have been is are".split())


def norm_space(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\u00a0", " "))
    text = re.sub(r"[\u00ad\u200b-\u200f\u2060\ufeff]", "", text)  # soft hyphens, zero-width and direction marks
    return " ".join(text.split())


def word_count(en: str) -> int:
    """English words, not counting punctuation that stands alone ("Insert - Frame")."""
    return sum(bool(re.search(r"\w", w)) for w in en.split())


def strip_accelerators(text: str) -> str:
    for pat, rep in ACCEL:
        text = pat.sub(rep, text)
    return text


def clean_pair(en: str, other: str, lang: str) -> tuple[str, str] | None:
    """Both sides cleaned, or None when the pair is unusable: English of 4-40 words; the other side really
    translated (not a copy of the English; Chinese really Chinese); no placeholder, markup, code or menu path
    left; brackets balanced (a translation that lost half of a 「」 pair lost text with it); lengths that fit (a
    wildly longer or shorter side is a misalignment)."""
    en, other = norm_space(en), norm_space(other)
    words = en.split()
    if not 4 <= word_count(en) <= 40 or not other or en == other or not re.match(r"[\w\"'(“‘]", en):
        return None
    if LEFTOVER.search(en) or LEFTOVER.search(other) or not re.search(r"[A-Za-z]{2}", en) or DANGLING.search(en):
        return None
    if any(t.count(o) != t.count(c) for t in (en, other) for o, c in BRACKETS):
        return None
    ratio = (len(other) + 10) / (len(en) + 10)  # the + 10: short labels vary more
    if lang == "zh":
        cjk = len(CJK.findall(other))
        if cjk < 2 or cjk < 0.3 * len(re.sub(r"\W", "", other)) or not 0.18 <= ratio <= 1.0:
            return None
    else:
        if not 0.7 <= ratio <= 2.0 or CJK.search(other):
            return None
        x_words = other.lower().split()
        shared = set(x_words) & {w.lower() for w in words}
        # an untranslated sentence left in English
        if sum(w in EN_WORDS for w in x_words) >= 2 or len(shared) >= 0.6 * len(set(x_words)):
            return None
    return en, other


SENTENCE_END = {"es": re.compile(r"(?<=[.!?:])\s+(?=[¿¡«\"(]?[A-ZÁÉÍÓÚÑ0-9])"),
                "zh": re.compile(r"(?<=[。！？：])\s*|(?<=[.!?:])\s+(?=[\u3400-\u9fff])")}
EN_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[\"(]?[A-Z0-9])")


def sentences(en: str, other: str, lang: str) -> list[tuple[str, str]]:
    """A paragraph too long for a pair (over 40 English words) as sentence pairs, when both sides have the same
    number of sentences (else nothing: which sentence goes with which is unknown)."""
    en, other = norm_space(en), norm_space(other)
    if word_count(en) <= 40:
        return [(en, other)]
    e = [s for s in EN_SENTENCE_END.split(en) if s.strip()]
    x = [s for s in SENTENCE_END[lang].split(other) if s.strip()]
    return list(zip(e, x)) if len(e) == len(x) > 1 else []


def _pairs(source: str, doc: str, lang: str, items) -> list[dict]:
    out = []
    for para_en, para_other in items:
        for en, other in sentences(para_en, para_other, lang):
            p = clean_pair(en, other, lang)
            if p:
                out.append({"doc": f"{source}:{doc}", "source": source, "en": p[0], lang: p[1]})
    return out


# ---------------------------------------------------------------------------------------------- the readers

def _tree(package: str) -> Path:
    d = EXTRACTED / package
    if not (d / ".version").exists():
        raise DataMissing(f"Debian package {package} is not extracted in {d}: {INSTALL}")
    return d


class _HelpPage(HTMLParser):
    """Paragraphs and headings with an id (par_id..., hd_id...) of one LibreOffice help page. Hidden variants of a
    switch (the macOS "Command" for "Ctrl", the Calc-only wording) are left out, the default kept; a paragraph with
    an inline icon (text missing around it) or code is marked unusable."""

    VOID = {"br", "img", "meta", "input", "link", "hr", "wbr", "source", "col", "area", "base", "embed"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.hidden = 0
        self.seg: tuple[str, list[str], list[bool]] | None = None  # id, text parts, [unusable]
        self.depth_seg = -1
        self.segments: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.VOID:
            if tag == "img" and self.seg and not self.hidden:
                self.seg[2][0] = True
            if tag == "br" and self.seg:  # "Check Paragraph Styles.<br>The Find text box ..."
                self.seg[1].append(" ")
            return
        hide = (a.get("hidden") is not None and not (a.get("id") or "").startswith("default")) or \
            tag in ("script", "style", "code", "pre") or "bascode" in (a.get("class") or "")
        self.stack.append((tag, hide))
        self.hidden += hide
        if self.seg and tag in ("code", "pre"):
            self.seg[2][0] = True
        sid = a.get("id") or ""
        if self.seg is None and not self.hidden and re.match(r"(par|hd)_id", sid) and \
                "code" not in (a.get("class") or ""):
            self.seg, self.depth_seg = (sid, [], [False]), len(self.stack)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        while self.stack:  # tolerate an unclosed inner tag
            t, hide = self.stack.pop()
            self.hidden -= hide
            if self.seg and len(self.stack) < self.depth_seg:
                sid, parts, bad = self.seg
                text = None if bad[0] else norm_space("".join(parts))
                # an id used twice with different text is ambiguous: drop it
                self.segments[sid] = text if self.segments.get(sid, text) == text else None
                self.seg = None
            if t == tag:
                break

    def handle_data(self, data):
        if self.seg and not self.hidden:
            self.seg[1].append(data)


def _help_segments(path: Path) -> dict[str, str]:
    p = _HelpPage()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return {k: v for k, v in p.segments.items() if v}


def libreoffice_help(lang: str) -> list[dict]:
    """LibreOffice 7.4 help pages (xhp-derived HTML), English and translated page aligned by paragraph id."""
    en_root = _tree("libreoffice-help-en-us") / "usr/share/libreoffice/help/en-US"
    code = LANG[lang]["libreoffice"]
    xx_root = _tree(f"libreoffice-help-{DEB_LANG[lang]['deb']}") / f"usr/share/libreoffice/help/{code}"
    out = []
    for en_path in sorted(en_root.glob("text/**/*.html")):
        rel = en_path.relative_to(en_root)
        xx_path = xx_root / rel
        if not xx_path.exists():
            continue
        en, xx = _help_segments(en_path), _help_segments(xx_path)
        out += _pairs("libreoffice-help", str(rel.with_suffix("")), lang,
                      [(en[k], xx[k]) for k in en if k in xx])
    return out


MALLARD = "{http://projectmallard.org/1.0/}"
BLOCKS = {f"{MALLARD}{t}" for t in ("p", "title", "desc")}


def _mallard_text(el) -> str | None:
    """Text of a Mallard block with its inline markup read as a reader sees it (keys joined with "+"); None when
    part of it is generated (an empty <link> shows the linked page's title) or is an image."""
    parts = []

    def walk(e):
        tag = e.tag.replace(MALLARD, "")
        if tag in ("media", "code", "screen") or (tag == "link" and not "".join(e.itertext()).strip()):
            raise ValueError
        if tag == "keyseq":
            parts.append("+".join(norm_space("".join(k.itertext())) for k in e))
        else:
            parts.append(e.text or "")
            for c in e:
                walk(c)
                parts.append(c.tail or "")

    try:
        parts.append(el.text or "")
        for c in el:
            walk(c)
            parts.append(c.tail or "")
    except ValueError:
        return None
    return norm_space("".join(parts))


def _mallard_blocks(path: Path) -> list[tuple[str, str | None]]:
    """(tag, text) of the page's paragraphs, titles and descriptions in order; editors' <comment>s (never
    translated) left out."""
    out = []

    def walk(el):
        if el.tag == f"{MALLARD}comment":
            return
        if el.tag in BLOCKS:
            if not (el.tag.endswith("title") and el.get("type") in ("sort", "link")):
                out.append((el.tag, _mallard_text(el)))
            return
        for c in el:
            walk(c)

    walk(ElementTree.parse(path).getroot())
    return out


def gnome_help(lang: str) -> list[dict]:
    """GNOME user help (Mallard pages, translated by itstool from the C page): blocks aligned in page order, a
    page skipped when its block structure differs from the English one."""
    root = _tree("gnome-user-docs") / "usr/share/help"
    out = []
    for en_path in sorted(root.glob("C/*/*.page")):
        rel = en_path.relative_to(root / "C")
        xx_path = root / LANG[lang]["gnome"] / rel
        if not xx_path.exists():
            continue
        en, xx = _mallard_blocks(en_path), _mallard_blocks(xx_path)
        if [t for t, _ in en] != [t for t, _ in xx]:
            continue
        out += _pairs("gnome-help", str(rel.with_suffix("")), lang,
                      [(e, x) for (_, e), (_, x) in zip(en, xx) if e and x])
    return out


def libreoffice_ui(lang: str) -> list[dict]:
    """LibreOffice UI message catalogues (.mo): English msgid -> translated msgstr; one catalogue, one document."""
    import gettext

    code = LANG[lang]["l10n"]
    tree = _tree(f"libreoffice-l10n-{DEB_LANG[lang]['deb']}") / f"usr/lib/libreoffice/program/resource/{code}"
    out = []
    for mo in sorted(tree.glob("LC_MESSAGES/*.mo")):
        with open(mo, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
        items = [(strip_accelerators(k.split("\x04")[-1]), strip_accelerators(v))
                 for k, v in catalog.items() if isinstance(k, str) and k and isinstance(v, str)]
        out += _pairs("libreoffice-ui", mo.stem, lang, items)
    return out


def _ftl_messages(text: str) -> dict[str, str]:
    """Fluent messages and attributes (`key` and `key.attr`) with simple values; a value with a selector or a
    variable is kept with its braces (clean_pair drops it), term references resolved by the caller."""
    out: dict[str, str] = {}
    key = None
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line.startswith("#"):
            key = None
            continue
        m = re.match(r"^(-?[A-Za-z][\w-]*)\s*=\s*(.*)$", line)
        a = re.match(r"^\s+\.([\w-]+)\s*=\s*(.*)$", line)
        if m:
            msg, key = m.group(1), m.group(1)
            out[key] = m.group(2)
        elif a and key is not None:
            key = f"{msg}.{a.group(1)}"
            out[key] = a.group(2)
        elif line.startswith((" ", "\t")) and key is not None:
            out[key] = (out[key] + " " + line.strip()).strip()
        else:
            key = None
    return {k: v.strip() for k, v in out.items()}


def _ftl_files(root: Path) -> dict[str, dict[str, str]]:
    return {str(p.relative_to(root)): _ftl_messages(p.read_text(encoding="utf-8", errors="replace"))
            for p in sorted(root.glob("**/*.ftl"))}


def _resolve_terms(files: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Put simple terms ({ -brand-short-name } = Firefox) into the messages that use them."""
    terms = {k: v for msgs in files.values() for k, v in msgs.items()
             if k.startswith("-") and "." not in k and "{" not in v}
    ref = re.compile(r"\{\s*(-[\w-]+)\s*\}")
    return {f: {k: ref.sub(lambda m: terms.get(m.group(1), m.group(0)), v) for k, v in msgs.items()
                if not k.startswith("-") and not k.endswith((".accesskey", ".commandkey", ".key", ".style"))}
            for f, msgs in files.items()}


def firefox_ui(lang: str) -> list[dict]:
    """Firefox ESR UI strings (Fluent .ftl): English from firefox-esr's omni.ja, the language pack's by the same
    file and message key; one .ftl file, one document."""
    en = _resolve_terms(_ftl_files(_tree("firefox-esr") / "localization/en-US"))
    code = LANG[lang]["firefox"]
    xx = _resolve_terms(_ftl_files(_tree(f"firefox-esr-l10n-{DEB_LANG[lang]['ffdeb']}") / f"localization/{code}"))
    out = []
    for f, msgs in sorted(en.items()):
        other = xx.get(f, {})
        out += _pairs("firefox-ui", f.removesuffix(".ftl"), lang,
                      [(v, other[k]) for k, v in msgs.items() if k in other])
    return out


def _translation_records(path: str) -> dict[str, tuple[str, str]]:
    """Description-md5 -> (package, description: synopsis line, then the long text with " ." paragraph breaks)."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for block in f.read().split("\n\n"):
            pkg = re.search(r"^Package: (.+)$", block, re.M)
            md5 = re.search(r"^Description-md5: (\w+)$", block, re.M)
            desc = re.search(r"^Description-(?!md5)[\w%]+: (.*(?:\n .*)*)", block, re.M)
            if pkg and md5 and desc:
                out.setdefault(md5.group(1), (pkg.group(1), desc.group(1)))
    return out


def _description_paragraphs(desc: str) -> list[str | None]:
    """Synopsis, then each paragraph of the long description; None for a list (its items run together)."""
    lines = desc.split("\n")
    paras, cur = [lines[0].strip()], []
    for line in lines[1:] + ["."]:
        if line.strip() == ".":
            is_list = any(re.match(r"[-*+o•] ", c) for c in cur)
            paras.append(None if is_list else " ".join(cur))
            cur = []
        else:
            cur.append(line.strip())
    return paras


def debian_descriptions(lang: str) -> list[dict]:
    """Translated Debian package descriptions (DDTP), matched to the English one by Description-md5: synopsis and
    long-description paragraphs aligned in order when both have the same number of paragraphs (lists left out)."""
    en_files = glob.glob(str(APT_LISTS / "*_i18n_Translation-en"))
    xx_files = glob.glob(str(APT_LISTS / f"*_i18n_Translation-{LANG[lang]['debian']}"))
    if not en_files or not xx_files:
        raise DataMissing(f"no translated Debian descriptions in {APT_LISTS}: {INSTALL}")
    en: dict[str, tuple[str, str]] = {}
    for f in sorted(en_files):
        en.update(_translation_records(f))
    out = []
    for f in sorted(xx_files):
        for md5, (pkg, desc) in sorted(_translation_records(f).items()):
            if md5 not in en:
                continue
            e, x = _description_paragraphs(en[md5][1]), _description_paragraphs(desc)
            if len(e) == len(x):
                out += _pairs("debian-descriptions", pkg, lang, [(a, b) for a, b in zip(e, x) if a and b])
    return out


READERS = {"libreoffice-help": libreoffice_help, "gnome-help": gnome_help, "debian-descriptions": debian_descriptions,
           "libreoffice-ui": libreoffice_ui, "firefox-ui": firefox_ui}
MODERN = tuple(READERS)  # full sentences first: dedup keeps a text with the first source that has it


def modern_pairs(lang: str) -> list[dict]:
    """All sources' pairs for one language, each English and each translated text once (a text in two documents
    or two sources is kept with the first, so it cannot land on both sides of a split by document)."""
    from tasks.splits import dedupe

    pairs = [p for src in MODERN for p in read_pairs(src, lang)]
    return dedupe(dedupe(pairs, lambda p: p["en"]), lambda p: p[lang])


# -------------------------------------------------------------------------------------------- cache, versions

def packages(source: str, lang: str) -> list[str]:
    """What one source was read from: "name version" of its Debian packages (install_data.sh writes .version),
    or the description lists and the day they were fetched."""
    if source == "debian-descriptions":
        stamp = APT_LISTS / ".fetched"
        day = stamp.read_text().strip() if stamp.exists() else "?"
        return [f"Debian bookworm i18n Translation-en, -es, -zh_CN lists (fetched {day})"]
    names = [p.format(**DEB_LANG[lang]) for p in PACKAGES[source]]
    return [(_tree(n) / ".version").read_text().strip() for n in names]


def _source_key(source: str, lang: str) -> list:
    if source == "debian-descriptions":  # fetched again, the lists change: their names and sizes
        return sorted([Path(f).name, Path(f).stat().st_size] for f in glob.glob(str(APT_LISTS / "*_Translation-*")))
    return packages(source, lang)


def cached(name: str, key, build):
    """build() (a JSON-able value), kept in data/parallel/cache/<name>.json.gz and reused while `key` is the same."""
    cache = PARALLEL / "cache" / f"{name}.json.gz"
    if cache.exists():
        try:
            with gzip.open(cache, "rt", encoding="utf-8") as f:
                data = json.load(f)
            if data["key"] == key:
                return data["value"]
        except (OSError, ValueError, KeyError):
            pass
    value = build()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump({"key": key, "value": value}, f, ensure_ascii=False)
    tmp.replace(cache)
    return value


def read_pairs(source: str, lang: str) -> list[dict]:
    """A reader's pairs, from the cache when they were read from the same package versions by this code."""
    key = {"source": _source_key(source, lang), "reader": READER_VERSION}
    return cached(f"{source}.{lang}", key, lambda: READERS[source](lang))
