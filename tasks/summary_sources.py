"""Summarization pairs that are not Debian package descriptions: AppStream app metadata (description -> summary)
and man pages (DESCRIPTION -> the NAME line). Both are fetched by scripts/install_data.sh into data/."""
from __future__ import annotations

import glob
import gzip
import html
import re
from pathlib import Path

from tasks.splits import ROOT

APPSTREAM = ROOT / "data" / "appstream"  # Debian's DEP-11 catalogue (apt-get update into a private lists dir)
MANPAGES = ROOT / "data" / "manpages" / "x"  # <package>/usr/share/man/man*/..., with <package>/.version


def _html_text(fragment: str) -> str:
    """AppStream description markup (<p>, <ul><li>, <em>, <code>) -> one line of plain text."""
    t = re.sub(r"<[^>]+>", " ", fragment)
    return " ".join(html.unescape(t).split())


def appstream_pairs(path: Path = APPSTREAM) -> tuple[list[dict], dict]:
    """(rows {package, doc, text, target}, info {name, licenses}) from Components-amd64.yml.gz."""
    import yaml

    files = sorted(glob.glob(str(path / "*_main_dep11_Components-amd64.yml.gz")))
    if not files:
        return [], {}
    rows, header, licenses = [], {}, {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: ~2 s instead of ~40 s
    with gzip.open(files[0], "rt", encoding="utf-8") as f:
        for i, doc in enumerate(yaml.load_all(f, Loader=loader)):
            if i == 0:
                header = doc or {}
                continue
            summary = ((doc or {}).get("Summary") or {}).get("C", "")
            desc = ((doc or {}).get("Description") or {}).get("C", "")
            if not (summary and desc and doc.get("Package")):
                continue
            lic = doc.get("ProjectLicense") or "not stated"
            licenses[lic] = licenses.get(lic, 0) + 1
            rows.append({"package": doc["Package"], "doc": doc["ID"], "text": _html_text(desc),
                         "target": " ".join(str(summary).split())})
    info = {"name": f"Debian AppStream catalogue ({header.get('Origin', '?')}, DEP-11 Components-amd64, "
                    f"generated {header.get('Time', '?')})", "licenses": licenses}
    return rows, info


# -- man pages -----------------------------------------------------------------------------------------------

_ESCAPES = [(r"\\\".*$", ""), (r"\\f(\[[^\]]*\]|\(..|.)", ""), (r"\\s[-+]?\d", ""), (r"\\\*\(Aq", "'"),
            (r"\\\*\[[^\]]*\]", ""), (r"\\\*\(..", ""), (r"\\\*.", ""), (r"\\\((em|en)", "-"),
            (r"\\\((aq|cq|oq)", "'"), (r"\\\((dq|lq|rq)", '"'), (r"\\\(co", "(c)"), (r"\\\(..", ""),
            (r"\\\[(em|en)\]", "-"), (r"\\\[[^\]]*\]", ""), (r"\\-", "-"), (r"\\[&|^%c/,]", ""), (r"\\[ ~0]", " "),
            (r"\\e", "\\"), (r"\\n(\(..|\[[^\]]*\]|.)", ""), (r"\\", "")]
_ESC = [(re.compile(a), (lambda m, b=b: b)) for a, b in _ESCAPES]
_FONT = {"B", "I", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI"}
_BREAK = {"PP", "P", "LP", "sp", "br", "HP", "IP", "TP", "RS", "RE", "SS", "nf", "fi", "EX", "EE", "TS", "TE", "in"}


def _unescape(s: str) -> str:
    for pat, rep in _ESC:
        s = pat.sub(rep, s)
    return s


def _macro_args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') and a.endswith('"') else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def parse_man(source: str, max_paragraphs: int = 3) -> tuple[str, str] | None:
    """(NAME line, first paragraphs of DESCRIPTION as plain text) from man(7) groff source, or None. Stops at the
    first list, example or subsection: what remains is the page's own prose about what the command does."""
    section, name_lines, paras, cur, stop, in_nf = "", [], [], [], False, False

    def flush():
        if cur:
            paras.append(" ".join(" ".join(cur).split()))
            cur.clear()

    for raw in source.split("\n"):
        line = raw.rstrip()
        if line.startswith((".", "'")):
            m = re.match(r"[.'](\S+)\s*(.*)", line)
            if not m:
                continue
            mac, rest = m.group(1), m.group(2)
            if mac in ("SH", "Sh"):
                if section == "DESCRIPTION":
                    flush()
                    break
                section = " ".join(_macro_args(_unescape(rest))).upper()
                continue
            if section == "NAME":
                if mac in _FONT:
                    name_lines.append(" ".join(_macro_args(_unescape(rest))))
                continue
            if section != "DESCRIPTION" or stop:
                continue
            if mac in ("nf", "EX", "TS"):
                in_nf = True
            elif mac in ("fi", "EE", "TE"):
                in_nf = False
            if mac in ("TP", "IP", "SS", "nf", "EX", "TS", "RS") and paras + ([1] if cur else []):
                flush()
                stop = True  # a list, example or subsection after some prose: enough
            elif mac in _BREAK:
                flush()
                if len(paras) >= max_paragraphs:
                    stop = True
            elif mac in _FONT and not in_nf:
                args = _macro_args(_unescape(rest))
                cur.append(("" if len(mac) == 2 and mac not in ("SM", "SB") else " ").join(args))
            continue
        if section == "NAME":
            name_lines.append(_unescape(line))
        elif section == "DESCRIPTION" and not stop and not in_nf:
            cur.append(_unescape(line))
    flush()
    name = " ".join(" ".join(name_lines).split())
    text = " ".join(p for p in paras[:max_paragraphs] if p)
    return (name, text) if name and text else None


def manpage_pairs(path: Path = MANPAGES) -> tuple[list[dict], dict]:
    """(rows {deb, doc, text, target}, info {name: package versions}) from the extracted man pages."""
    rows, versions = [], []
    for pkg_dir in sorted(Path(path).glob("*")):
        if not (pkg_dir / ".version").exists():
            continue
        versions.append((pkg_dir / ".version").read_text().strip())
        for f in sorted(pkg_dir.glob("usr/share/man/man*/*")):
            if f.is_symlink() or not f.is_file():
                continue
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt", encoding="utf-8", errors="replace") as fh:
                src = fh.read()
            if src.lstrip().startswith(".so ") or "\n.Sh " in src:  # a link page; mdoc(7) pages are not read
                continue
            parsed = parse_man(src)
            if not parsed or " - " not in parsed[0]:
                continue
            names, summary = parsed[0].split(" - ", 1)
            doc = f.name[:-3] if f.suffix == ".gz" else f.name  # "ls.1"
            rows.append({"deb": pkg_dir.name, "doc": doc, "names": names.strip(), "text": parsed[1],
                         "target": summary.strip()})
    return rows, {"name": "man pages (English) of Debian bookworm packages: " + ", ".join(versions)}
