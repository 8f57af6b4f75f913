"""The pairwise (tree) sums of chunk statistics: one shape, three ways to get it, and the
accuracy it buys (against exactly rounded sums)."""
import math

import numpy as np
import pytest

from fastvi.engine.reduce import ChunkTree, PairwiseSum, split, tree_sum
from fastvi.engine.stats import SufficientStats


class Shape:
    """A value whose sum records the tree that made it: '(a+b)'."""

    def __init__(self, text):
        self.text = text

    def __add__(self, other):
        return Shape(f"({self.text}+{other.text})")


def reference_shape(lo, hi):
    """The tree of the docstring, written out independently: split at the largest power
    of two below the size."""
    if hi - lo == 1:
        return str(lo)
    half = 1
    while half * 2 < hi - lo:
        half *= 2
    return f"({reference_shape(lo, lo + half)}+{reference_shape(lo + half, hi)})"


@pytest.mark.parametrize("n_chunks", list(range(1, 40)) + [64, 100, 129])
def test_the_three_forms_build_one_tree(n_chunks):
    values = {i: Shape(str(i)) for i in range(n_chunks)}
    expected = reference_shape(0, n_chunks)
    assert tree_sum(values, n_chunks).text == expected
    partial = PairwiseSum()
    for i in range(n_chunks):
        partial.add(i, values[i])
        assert len(partial.blocks) <= math.floor(math.log2(i + 1)) + 1
    assert partial.total().text == expected
    # a pass resumed from its blocks goes on alike
    half = PairwiseSum()
    for i in range(n_chunks // 2):
        half.add(i, values[i])
    resumed = PairwiseSum(half.blocks)
    for i in range(n_chunks // 2, n_chunks):
        resumed.add(i, values[i])
    assert resumed.total().text == expected
    # leaves set in a random order, one replaced: the same root as the sum at once
    tree = ChunkTree(n_chunks)
    order = np.random.default_rng(n_chunks).permutation(n_chunks)
    for i in order:
        root = tree.set(int(i), values[int(i)])
    assert root.text == expected
    replaced = {**values, int(order[0]): Shape("x")}
    assert tree.set(int(order[0]), Shape("x")).text == tree_sum(replaced, n_chunks).text
    assert ChunkTree(n_chunks, replaced).root.text == tree.root.text


def test_absent_chunks_count_as_nothing():
    values = {0: Shape("0"), 3: Shape("3"), 4: Shape("4")}
    assert tree_sum(values, 6).text == "((0+3)+4)"
    tree = ChunkTree(6)
    assert tree.root is None
    tree.set(4, Shape("4"))
    assert tree.root.text == "4"
    assert tree_sum({}, 3) is None and split(0, 5) == 4 and split(4, 6) == 5


def test_pairwise_sum_refuses_a_chunk_out_of_order():
    partial = PairwiseSum()
    partial.add(0, 1.0)
    with pytest.raises(ValueError, match="chunks 2:3 added to a pairwise sum that expects chunk 1"):
        partial.add(2, 1.0)


def test_pairwise_statistics_are_closer_to_the_exact_sums_than_left_to_right():
    """Data far from the origin, many chunks: every entry of the pairwise sum is at least
    as close to the exactly rounded sum (math.fsum over the chunks) as the running sum,
    and the largest error is several times smaller."""
    rng = np.random.default_rng(0)
    n_chunks, k, d = 2048, 2, 3
    ref = np.full((k, d), 1e4)
    chunks = {}
    for i in range(n_chunks):
        s1 = 1e4 * (1.0 + 1e-3 * rng.standard_normal((k, d)))
        chunks[i] = SufficientStats(rng.uniform(100.0, 101.0, k), s1,
                                    s1 * rng.uniform(0.9, 1.1, (k, d)), ref, 0.0, 1.0)
    pairwise = tree_sum(chunks, n_chunks)
    running = chunks[0]
    for i in range(1, n_chunks):
        running = running + chunks[i]
    errors = {}
    for name in ("nk", "s1", "s2"):
        exact = np.vectorize(lambda *idx: math.fsum(getattr(chunks[i], name)[idx]
                                                    for i in range(n_chunks)))(
            *np.indices(getattr(pairwise, name).shape))
        errors[name] = (np.abs(getattr(pairwise, name) - exact),
                        np.abs(getattr(running, name) - exact))
    pair_max = max(e[0].max() for e in errors.values())
    run_max = max(e[1].max() for e in errors.values())
    assert run_max > 0.0
    print(f"largest error: pairwise {pair_max:.3g}, running {run_max:.3g}")
    assert pair_max * 4 <= run_max, (pair_max, run_max)
