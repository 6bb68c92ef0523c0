"""Render the report's blocks (``nnlab.reporting.blocks.build_blocks``) as Markdown and as self-contained HTML.

Blocks are tuples: ``("h1"|"h2"|"h3"|"p", text)``, ``("list", items)``,
``("table", head, rows)`` and ``("figure", png_path, caption)``. The HTML embeds
each PNG as a base64 data URI and links nothing outside itself (no scripts,
fonts or style sheets from the network), so it opens from disk anywhere.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; max-width: 900px; }
li { margin: 0.15em 0; }
"""


def _md_text(text: object) -> str:
    """Text from run files (a description, a preset name, a path) as Markdown shows it: a
    ``<`` becomes ``&lt;``, so no raw HTML (a ``<script>``, an ``<img onerror>``) reaches a
    viewer that renders report.md."""
    return str(text).replace("<", "&lt;")


def _md_cell(text: object) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[tuple], out: Path) -> str:
    """Markdown with figures linked relative to ``out`` (the folder report.md is written to)."""
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + _md_text(block[1]), ""]
        elif kind == "p":
            lines += [_md_text(block[1]), ""]
        elif kind == "list":
            lines += [f"- {_md_text(item)}" for item in block[1]] + [""]
        elif kind == "table":
            head, rows = block[1], block[2]
            lines.append("| " + " | ".join(map(_md_cell, head)) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            lines.append("")
        elif kind == "figure":
            rel = Path(os.path.relpath(block[1], out)).as_posix()
            lines += [f"![{Path(block[1]).stem}]({rel})", "", f"*{_md_text(block[2])}*", ""]
    return "\n".join(lines)


def render_html(blocks: list[tuple]) -> str:
    """One HTML file with every figure embedded (base64 PNG)."""
    esc = html.escape
    title = next((b[1] for b in blocks if b[0] == "h1"), "nnlab report")
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(str(i))}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figure":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(Path(block[1]).stem)}">'
                f"<figcaption>{esc(block[2])}</figcaption></figure>"
            )
    # rel="icon" href="data:,": no favicon request (a browser would otherwise log a failed fetch).
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )
