"""Our Zhang–Shasha against the ``zss`` package on random trees."""

import zss
from hypothesis import given, settings
from hypothesis import strategies as st

from padiff_graph.match.ted import tree_edit

trees = st.recursive(
    st.tuples(st.sampled_from("abc"), st.just(())),
    lambda children: st.tuples(st.sampled_from("abc"), st.lists(children, max_size=3).map(tuple)),
    max_leaves=8,
)


def to_zss(tree):
    node = zss.Node(tree[0])
    for child in tree[1]:
        node.addkid(to_zss(child))
    return node


def count(tree) -> int:
    return 1 + sum(count(child) for child in tree[1])


@settings(max_examples=150, deadline=None)
@given(trees, trees)
def test_distance_and_mapping_agree_with_zss(left, right) -> None:
    # wrap nodes so that equal subtrees stay distinct objects
    def wrap(tree, prefix):
        return (prefix, tree[0], tuple(wrap(child, f"{prefix}.{i}") for i, child in enumerate(tree[1])))

    left_root, right_root = wrap(left, "L"), wrap(right, "R")
    result = tree_edit(
        left_root,
        right_root,
        children=lambda node: node[2],
        rename_cost=lambda a, b: 0.0 if a[1] == b[1] else 1.0,
        remove_cost=lambda node: 1.0,
        insert_cost=lambda node: 1.0,
    )
    expected = zss.simple_distance(to_zss(left), to_zss(right))
    assert result.distance == expected
    renames = sum(a[1] != b[1] for a, b in result.mapping)
    assert renames + (count(left) - len(result.mapping)) + (count(right) - len(result.mapping)) == expected
