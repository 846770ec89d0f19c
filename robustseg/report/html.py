"""``report.html``: the report's Markdown as one self-contained HTML page (markdown-it-py, no hand-written parser).

The page is made from exactly the text of ``report.md``: headings get the ids GitHub gives them (so the
findings' ``#section`` links work in both), a table of contents is built from the headings, the Findings and
Read-with-care lists sit in one box, every figure is embedded as a ``data:`` URI (the file opens anywhere,
alone), and each table sits in its own container that wraps or scrolls rather than widening the page. A
print stylesheet lays the page out for A4 ("Print to PDF"): no navigation, tables in small type that fit the
page width, rows and figures never split across pages.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from robustseg.report.markdown import anchor

HTML_NAME = "report.html"
FINDINGS_IDS = ("findings", "read-with-care")
"""Ids of the headings whose sections form the findings box."""
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

CSS = """
:root { --fg: #1b1b1b; --muted: #57606a; --line: #d0d7de; --accent: #0072B2; --box: #eef6fb; --warn: #E69F00; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; color: var(--fg); line-height: 1.45;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
.layout { display: grid; grid-template-columns: 13.5rem minmax(0, 1fr); }
nav.toc { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto; padding: 1rem .8rem;
          border-right: 1px solid var(--line); background: #f6f8fa; font-size: .82rem; }
nav.toc .toc-title { font-weight: 600; margin: 0 0 .4rem; }
nav.toc ol { list-style: none; margin: 0; padding-left: 0; }
nav.toc li { margin: .15rem 0; }
nav.toc li.level-3 { padding-left: .9rem; }
nav.toc a { color: var(--fg); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
main { min-width: 0; max-width: 76rem; padding: .5rem 2rem 3rem; }
h1 { font-size: 1.6rem; margin: .8rem 0 .4rem; }
h2 { font-size: 1.3rem; margin: 1.8rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; }
a { color: var(--accent); }
section.findings { border: 2px solid var(--accent); background: var(--box); border-radius: 6px;
                   padding: .1rem 1.2rem .6rem; margin: .6rem 0 1.4rem; }
@media (min-width: 1200px) {
  section.findings { display: grid; grid-template-columns: minmax(0, 2.2fr) minmax(0, 1fr); column-gap: 1.6rem; }
  section.findings > .care { border-left: 1px solid var(--line); padding-left: 1.2rem; }
}
section.findings h2 { border: 0; margin: .7rem 0 .3rem; font-size: 1.15rem; }
section.findings ul { margin: .2rem 0; padding-left: 1.2rem; font-size: .95rem; }
section.findings li { margin: .25rem 0; }
section.findings h2#read-with-care { color: #8a5a00; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .8rem; }
th, td { border: 1px solid var(--line); padding: .2rem .4rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #f8f9fa; }
img { display: block; max-width: 100%; height: auto; margin: .6rem 0; }
blockquote { border-left: 4px solid var(--warn); background: #fff8e8; margin: 1rem 0; padding: .3rem 1rem; }
code { font-size: .88em; background: #eef1f4; padding: 0 .2em; border-radius: 3px; overflow-wrap: anywhere; }
@media (max-width: 900px) {
  .layout { display: block; }
  nav.toc { position: static; max-height: none; border-right: 0; border-bottom: 1px solid var(--line); }
  main { padding: .5rem 1rem 2rem; }
}
@media print {
  @page { size: A4; margin: 12mm; }
  html { font-size: 9pt; }
  .layout { display: block; }
  nav.toc { display: none; }
  main { max-width: none; padding: 0; }
  a { color: inherit; text-decoration: none; }
  .table-wrap { overflow: visible; }
  table { font-size: 6.5pt; }
  th, td { padding: .1rem .2rem; }
  tr, img, blockquote, section.findings li { break-inside: avoid; }
  thead { display: table-header-group; }
  h1, h2, h3 { break-after: avoid; }
  section.findings { background: none; }
}
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<div class="layout">
<nav class="toc" aria-label="Contents">
<p class="toc-title">Contents</p>
{toc}
</nav>
<main>
{body}
</main>
</div>
</body>
</html>
"""


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in the text stays text
    md.add_render_rule("table_open", lambda self, tokens, idx, options, env: '<div class="table-wrap">\n<table>\n')
    md.add_render_rule("table_close", lambda self, tokens, idx, options, env: "</table>\n</div>\n")
    return md


def _text(inline: Token) -> str:
    return "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline"))


def _anchor_headings(tokens: list[Token]) -> list[tuple[int, str, str]]:
    """Give every heading its GitHub id (duplicates get ``-1``, ``-2``); returns ``(level, id, text)``."""
    seen: dict[str, int] = {}
    toc = []
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open":
            continue
        text = _text(tokens[i + 1])
        base = anchor(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        ident = base if n == 0 else f"{base}-{n}"
        tok.attrSet("id", ident)
        toc.append((int(tok.tag[1]), ident, text))
    return toc


def _embed_images(tokens: list[Token], folder: Path) -> None:
    """Replace each image's relative ``src`` by a ``data:`` URI of the file under ``folder``."""
    root = folder.resolve()
    for tok in tokens:
        for child in tok.children or []:
            if child.type != "image":
                continue
            src = str(child.attrGet("src") or "")
            path = (root / src).resolve()
            if ":" in src or root not in path.parents or not path.is_file():
                continue  # not ours: left as it is (the browser test reports it as broken)
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            child.attrSet("src", f"data:{MIME.get(path.suffix.lower(), 'application/octet-stream')};base64,{data}")


def _html(text: str) -> Token:
    tok = Token("html_block", "", 0)
    tok.content = text
    return tok


def _box_findings(tokens: list[Token]) -> list[Token]:
    """Put the Findings and the Read-with-care sections side by side in one ``<section class="findings">``
    (stacked on narrow screens and in print)."""
    starts = [i for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    ids = {i: tokens[i].attrGet("id") for i in starts}
    inside = [i for i in starts if ids[i] in FINDINGS_IDS]
    if not inside:
        return tokens
    out = [*tokens[:inside[0]], _html('<section class="findings" aria-label="Findings and Read with care">\n')]
    for start in inside:
        end = next((i for i in starts if i > start), len(tokens))
        kind = "found" if ids[start] == "findings" else "care"
        out += [_html(f'<div class="{kind}">\n'), *tokens[start:end], _html("</div>\n")]
    after = next((i for i in starts if i > inside[-1]), len(tokens))
    return [*out, _html("</section>\n"), *tokens[after:]]


def _toc(entries: list[tuple[int, str, str]]) -> str:
    items = [f'<li class="level-{level}"><a href="#{ident}">{html.escape(text)}</a></li>'
             for level, ident, text in entries if level in (2, 3)]
    return "<ol>\n" + "\n".join(items) + "\n</ol>"


def to_html(markdown: str, folder: str | Path) -> str:
    """The HTML page of ``markdown``, whose relative image paths are resolved under ``folder`` and embedded."""
    md = _renderer()
    env: dict = {}
    tokens = md.parse(markdown, env)
    toc = _anchor_headings(tokens)
    _embed_images(tokens, Path(folder))
    body = md.renderer.render(_box_findings(tokens), md.options, env)
    title = next((text for level, _, text in toc if level == 1), "robustseg report")
    return PAGE.format(title=html.escape(title), css=CSS.strip(), toc=_toc(toc), body=body)


__all__ = ["HTML_NAME", "to_html"]
