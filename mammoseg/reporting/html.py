"""The report document as one self-contained HTML page (report.html): figures embedded, opens from disk.

The answer comes first (the at-a-glance line larger, then the primary comparisons), the exploratory
lines are folded in <details>, and every table sits in a div that scrolls sideways, so a wide table
never widens the page.
"""

from __future__ import annotations

import base64
import html

from mammoseg.reporting.document import Block, Bullets, Details, Document, Figure, Paragraph, Section, Table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.88em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
td.best{background:#e3f4e1;font-weight:bold}
ul.verdict li{margin:0.3em 0}.notes{color:#555}p.glance{font-size:1.1em;font-weight:600}
.scroll{overflow-x:auto;max-width:100%}details summary{cursor:pointer;color:#444}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;font-size:0.9em}
"""


def render(document: Document) -> str:
    """The whole page."""
    title = html.escape(document.title)
    h = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">", f"<title>{title}</title>",
         f"<style>{CSS}</style></head><body>", f"<h1>{title}</h1>"]
    for block in document.blocks:
        h += _block(block)
    h += ["</body></html>"]
    return "\n".join(h) + "\n"


def _text(text: str) -> str:
    """Escape, then render the **bold** spans."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _class(style: str) -> str:
    return f" class=\"{style}\"" if style else ""


def _block(block: Block) -> list[str]:
    if isinstance(block, Section):
        level = block.level
        return [f"<h{level}>{_text(block.title)}</h{level}>"] + [line for b in block.blocks for line in _block(b)]
    if isinstance(block, Details):
        inner = [line for b in block.blocks for line in _block(b)]
        return [f"<details><summary>{_text(block.summary)}</summary>", *inner, "</details>"]
    if isinstance(block, Paragraph):
        return [f"<p{_class(block.style)}>{_text(block.text)}</p>"]
    if isinstance(block, Bullets):
        items = [f"<li>{_text(item)}</li>" for item in block.items]
        return [f"<ul{_class(block.style)}>", *items, "</ul>"] if items else []
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return [f"<figure id=\"{block.stem}\"><img alt=\"{block.stem}\" src=\"data:image/png;base64,{data}\">"
                f"<figcaption>{_text(block.caption)}</figcaption></figure>"]
    raise TypeError(f"no HTML for {type(block).__name__}")


def _table(table: Table) -> list[str]:
    """A table inside a sideways-scrolling div; an emphasised cell is marked "best"."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.header)
    h = [f"<div class=\"scroll\"><table{_class(table.style)}><thead><tr>{head}</tr></thead><tbody>"]
    for row, marks in zip(table.rows, table.emphasis):
        h.append("<tr>" + "".join(f"<td{_class('best' if bold else '')}>{html.escape(text)}</td>"
                                  for text, bold in zip(row, marks)) + "</tr>")
    return h + ["</tbody></table></div>"]
