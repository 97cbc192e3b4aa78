"""A length x depth heatmap of exact-match rates as a standalone SVG (no plotting library),
colored like mla-recall's: red at 0, yellow at 0.5, green at 1."""

from xml.sax.saxutils import escape

CELL_W, CELL_H, LEFT, TOP = 44, 26, 64, 40


def color(rate):
    """Red (0) through yellow (0.5) to green (1)."""
    if rate <= 0.5:
        r, g = 215, int(48 + (200 - 48) * rate * 2)
    else:
        r, g = int(215 - (215 - 40) * (rate - 0.5) * 2), int(200 - (200 - 160) * (rate - 0.5) * 2)
    return f"rgb({r},{g},60)"


def write(path, cells, lengths, depths, title):
    """cells: dicts with length, depth and exact; one square per (length, depth), the mean
    of its cells' exact flags."""
    width = LEFT + CELL_W * len(depths) + 20
    height = TOP + CELL_H * len(lengths) + 44
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>']
    for i, length in enumerate(lengths):
        y = TOP + i * CELL_H
        out.append(f'<text x="{LEFT - 6}" y="{y + CELL_H / 2 + 4}" text-anchor="end">'
                   f'{length}</text>')
        for j, depth in enumerate(depths):
            hits = [c["exact"] for c in cells
                    if c["length"] == length and abs(c["depth"] - depth) < 1e-9]
            x = LEFT + j * CELL_W
            if not hits:
                out.append(f'<rect x="{x}" y="{y}" width="{CELL_W - 1}" height="{CELL_H - 1}" '
                           f'fill="#ddd"/>')
                continue
            rate = sum(hits) / len(hits)
            out.append(f'<rect x="{x}" y="{y}" width="{CELL_W - 1}" height="{CELL_H - 1}" '
                       f'fill="{color(rate)}"><title>length {length}, depth {depth:.2f}: '
                       f'{rate:.2f} of {len(hits)}</title></rect>')
            out.append(f'<text x="{x + CELL_W / 2}" y="{y + CELL_H / 2 + 4}" '
                       f'text-anchor="middle">{rate:.2f}</text>')
    y = TOP + len(lengths) * CELL_H + 16
    for j, depth in enumerate(depths):
        out.append(f'<text x="{LEFT + j * CELL_W + CELL_W / 2}" y="{y}" '
                   f'text-anchor="middle">{depth:.1f}</text>')
    out.append(f'<text x="{LEFT + CELL_W * len(depths) / 2}" y="{y + 18}" '
               f'text-anchor="middle">needle depth (0 = start of the haystack)</text>')
    out.append(f'<text x="14" y="{TOP + CELL_H * len(lengths) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + CELL_H * len(lengths) / 2})">tokens</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
