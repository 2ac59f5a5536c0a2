"""The DAG graph: layers from the inputs, fewer crossings, escaped SVG."""

from __future__ import annotations

from workflows_tick.ui.graph import NODE_WIDTH, layers_of, layout, render_svg


def test_a_node_sits_one_layer_right_of_its_deepest_input() -> None:
    inputs = {"a": [], "b": ["a"], "c": ["a", "b"], "d": []}
    assert layers_of(inputs) == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_inputs_outside_the_graph_are_ignored_and_a_cycle_does_not_hang() -> None:
    assert layers_of({"a": ["gone"], "b": ["a"]}) == {"a": 0, "b": 1}
    assert set(layers_of({"x": ["y"], "y": ["x"], "z": []}).values()) == {0, 1}


def test_layout_places_layers_left_to_right_without_overlap() -> None:
    placed = layout({"start": [], "x": ["start"], "y": ["start"], "join": ["x", "y"]})
    nodes = placed.nodes
    assert nodes["start"].x < nodes["x"].x == nodes["y"].x < nodes["join"].x
    assert nodes["x"].y != nodes["y"].y
    assert placed.width >= nodes["join"].x + NODE_WIDTH
    assert set(placed.edges) == {("start", "x"), ("start", "y"), ("x", "join"), ("y", "join")}


def test_barycenter_ordering_uncrosses_edges() -> None:
    # b1 feeds c2 and b2 feeds c1: listed in that order the edges would cross.
    placed = layout({"b1": [], "b2": [], "c2": ["b1"], "c1": ["b2"]})
    nodes = placed.nodes
    assert (nodes["b1"].y < nodes["b2"].y) == (nodes["c2"].y < nodes["c1"].y)


def test_svg_colours_nodes_links_them_and_escapes_names() -> None:
    svg = render_svg(
        layout({"<b>": [], "ok": ["<b>"]}),
        {"ok": "failed"},
        link=lambda name: "/task-runs/7" if name == "ok" else None,
    )
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert '<a href="/task-runs/7"><g class="node s-failed" data-task="ok">' in svg
    assert 'class="node s-none" data-task="&lt;b&gt;"' in svg
    assert svg.count('<path class="edge"') == 1


def test_long_names_are_shortened_on_the_node_but_whole_in_the_title() -> None:
    name = "a_very_long_task_name_that_goes_on.sql"
    svg = render_svg(layout({name: []}), {})
    assert f"<title>{name}: none</title>" in svg
    assert "a_very_long_task_name_t…" in svg
