"""A DAG drawn as SVG: a layered layout (inputs left of what reads them). Pure logic.

Layers by longest path from the sources, then a few barycenter sweeps to order
each layer so that edges cross less (the Sugiyama method, without dummy nodes:
DAGs here have tens of tasks, not thousands).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

NODE_WIDTH = 180
NODE_HEIGHT = 34
GAP_X = 60
GAP_Y = 16
MARGIN = 8
LABEL_CHARS = 24
SWEEPS = 4


@dataclass(frozen=True)
class Placed:
    name: str
    layer: int
    x: float
    y: float


@dataclass(frozen=True)
class Layout:
    nodes: Mapping[str, Placed]
    edges: tuple[tuple[str, str], ...]
    """(input, node) pairs."""
    width: float
    height: float


def layers_of(inputs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each node's layer: 0 for a node without inputs, else one more than its deepest
    input. Inputs that are not nodes are ignored; nodes on a cycle (which a loaded
    DAG never has) go one layer right of the last placed node."""
    pending = {n: {p for p in parents if p in inputs} for n, parents in inputs.items()}
    layer: dict[str, int] = {}
    ready = [n for n, parents in pending.items() if not parents]
    while ready:
        node = ready.pop()
        layer[node] = 1 + max((layer[p] for p in inputs[node] if p in layer), default=-1)
        for n, parents in pending.items():
            if node in parents:
                parents.discard(node)
                if not parents and n not in layer:
                    ready.append(n)
    deepest = max(layer.values(), default=-1)
    for node in inputs:
        layer.setdefault(node, deepest + 1)
    return layer


def layout(inputs: Mapping[str, Sequence[str]]) -> Layout:
    """Place every node of ``inputs`` (node -> its inputs, in display order)."""
    layer = layers_of(inputs)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in inputs:
        columns[layer[node]].append(node)
    edges = tuple((p, n) for n, parents in inputs.items() for p in parents if p in inputs)
    children: dict[str, list[str]] = {n: [] for n in inputs}
    for parent, child in edges:
        children[parent].append(child)

    def position() -> dict[str, int]:
        return {n: i for column in columns for i, n in enumerate(column)}

    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        neighbours = inputs if downward else children
        order = range(1, len(columns)) if downward else range(len(columns) - 2, -1, -1)
        for c in order:
            pos = position()
            columns[c].sort(key=functools.partial(_barycenter, pos=pos, linked=neighbours))

    tallest = max((len(c) for c in columns), default=0)
    placed = {}
    for c, column in enumerate(columns):
        offset = (tallest - len(column)) * (NODE_HEIGHT + GAP_Y) / 2
        for i, node in enumerate(column):
            placed[node] = Placed(
                node,
                c,
                MARGIN + c * (NODE_WIDTH + GAP_X),
                MARGIN + offset + i * (NODE_HEIGHT + GAP_Y),
            )
    width = 2 * MARGIN + len(columns) * NODE_WIDTH + max(len(columns) - 1, 0) * GAP_X
    height = 2 * MARGIN + tallest * NODE_HEIGHT + max(tallest - 1, 0) * GAP_Y
    return Layout(placed, edges, width, height)


def _barycenter(node: str, pos: Mapping[str, int], linked: Mapping[str, Sequence[str]]) -> float:
    """The mean position of ``node``'s neighbours (its own when it has none)."""
    found = [pos[m] for m in linked[node] if m in pos]
    return sum(found) / len(found) if found else pos[node]


def _label(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def render_svg(
    graph: Layout,
    states: Mapping[str, str],
    link: Callable[[str], str | None] = lambda name: None,
    external: frozenset[str] = frozenset(),
) -> Markup:
    """The SVG of ``graph``; each node gets the CSS class ``s-<state>`` (``s-none``
    without a state) and links to ``link(name)`` when that is not None. Every name
    is escaped."""
    parts = [
        f'<svg class="dag-graph" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{graph.width:.0f}" height="{graph.height:.0f}" '
        f'viewBox="0 0 {graph.width:.0f} {graph.height:.0f}">'
    ]
    for parent, child in graph.edges:
        a, b = graph.nodes[parent], graph.nodes[child]
        x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2
        x2, y2 = b.x, b.y + NODE_HEIGHT / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} '
            f'{mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"/>'
        )
    for node in graph.nodes.values():
        state = states.get(node.name, "none")
        kind = " external" if node.name in external else ""
        box = (
            f'<g class="node s-{escape(state)}{kind}" data-task="{escape(node.name)}">'
            f"<title>{escape(node.name)}: {escape(state)}</title>"
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{NODE_WIDTH}" '
            f'height="{NODE_HEIGHT}" rx="5"/>'
            f'<text x="{node.x + 10:.1f}" y="{node.y + NODE_HEIGHT / 2 + 4:.1f}">'
            f"{escape(_label(node.name))}</text></g>"
        )
        href = link(node.name)
        parts.append(f'<a href="{escape(href)}">{box}</a>' if href else box)
    parts.append("</svg>")
    return Markup("".join(parts))
