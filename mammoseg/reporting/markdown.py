"""The report document as Markdown (report.md): plain text that reads well in a terminal or a diff.
Markdown cannot fold, so a folded block is shown inline; figures are linked from beside the report."""

from __future__ import annotations

from mammoseg.reporting.document import Block, Bullets, Details, Document, Figure, Paragraph, Section, Table


def render(document: Document) -> str:
    """The whole document; every block is followed by one blank line."""
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        lines += _block(block)
    return "\n".join(lines).rstrip("\n") + "\n"


def _block(block: Block) -> list[str]:
    if isinstance(block, Section):
        return ["#" * block.level + f" {block.title}", ""] + [line for b in block.blocks for line in _block(b)]
    if isinstance(block, Details):
        return [line for b in block.blocks for line in _block(b)]
    if isinstance(block, Paragraph):
        return [block.text, ""]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items] + [""] if block.items else []
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return [f"![{block.stem}]({block.path})", "", block.caption, ""]
    raise TypeError(f"no Markdown for {type(block).__name__}")


def _table(table: Table) -> list[str]:
    rows = [[f"**{text}**" if bold else text for text, bold in zip(row, marks)]
            for row, marks in zip(table.rows, table.emphasis)]
    return (["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
            + ["| " + " | ".join(row) + " |" for row in rows] + [""])
