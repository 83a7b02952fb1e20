"""A document written twice at once: self-contained HTML and its Markdown twin.

Example:
    >>> doc = Document("Run report")
    >>> doc.heading("Cross-validation")
    >>> doc.table(["class", "Dice"], [["liver", "0.95"]])
    >>> "<table>" in doc.html() and "| liver | 0.95 |" in doc.markdown()
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["Document"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:1.2em 2em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #4477aa;padding-bottom:.15em;margin-top:1.6em}
h3{margin-bottom:.3em}table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:middle}
th{background:#eef2f7}tr:nth-child(even) td{background:#fafafa}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:.8em 0}
.card{border:1px solid #ccd;border-radius:6px;padding:.5em .9em;background:#f6f8fb;min-width:10em}
.card b{display:block;font-size:1.35em}.muted{color:#666;font-size:.9em}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:.82em;white-space:pre-wrap}
img{max-width:100%}.thumb{max-height:150px}.row{display:flex;flex-wrap:wrap;gap:.6em}
"""

Cell = str | tuple[str, str]  # plain text, or ("img", data URI) for a picture in the cell


class Document:
    """Accumulate headings, paragraphs, tables, pictures and code blocks in HTML and Markdown."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._html: list[str] = [f"<h1>{escape(title)}</h1>"]
        self._md: list[str] = [f"# {title}", ""]

    def heading(self, text: str, level: int = 2) -> None:
        anchor = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
        self._html.append(f'<h{level} id="{escape(anchor)}">{escape(text)}</h{level}>')
        self._md += ["#" * level + " " + text, ""]

    def paragraph(self, text: str, muted: bool = False) -> None:
        cls = ' class="muted"' if muted else ""
        self._html.append(f"<p{cls}>{escape(text)}</p>")
        self._md += [text, ""]

    def cards(self, items: Sequence[tuple[str, str]]) -> None:
        """Key figures as boxes: (label, value)."""
        boxes = "".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in items)
        self._html.append(f'<div class="cards">{boxes}</div>')
        self._md += [f"- **{k}**: {v}" for k, v in items] + [""]

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in row) + "</tr>" for row in rows)
        self._html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        self._md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self._md += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows]
        self._md.append("")

    def images(self, items: Sequence[tuple[str, str]]) -> None:
        """Pictures in a row: (data URI, caption). Markdown names them (the pictures are in the HTML)."""
        tags = "".join(f'<figure><img src="{uri}" alt="{escape(alt)}"></figure>' for uri, alt in items)
        self._html.append(f'<div class="row">{tags}</div>')
        self._md += [f"*(picture in the HTML report: {alt})*" for _, alt in items] + [""]

    def code(self, lines: Sequence[str]) -> None:
        self._html.append("<pre>" + escape("\n".join(lines)) + "</pre>")
        self._md += ["```", *lines, "```", ""]

    def html(self) -> str:
        """The whole page: inline style, no script, no external resource."""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{escape(self.title)}'
            f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(self._html) + "\n</body></html>\n"
        )

    def markdown(self) -> str:
        return "\n".join(self._md).rstrip() + "\n"


def _cell_html(cell: Cell) -> str:
    if isinstance(cell, tuple):
        return f'<img class="thumb" src="{cell[1]}" alt="overlay">'
    return escape(cell)


def _cell_md(cell: Cell) -> str:
    if isinstance(cell, tuple):
        return "(overlay in the HTML)"
    return cell.replace("|", "\\|")
