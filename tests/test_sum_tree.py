"""SumTree against a plain numpy oracle: invariants, last-write-wins updates, prefix search."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlkit.replay import SumTree
from rlkit.replay.sum_tree import FANOUT, FLAT_TOP


def assert_tree_consistent(tree: SumTree, oracle: np.ndarray) -> None:
    """Leaves equal the oracle, padding is empty, every node is exactly the sum of its children."""
    leaves = tree.levels[-1]
    np.testing.assert_array_equal(leaves[: tree.capacity], oracle)
    assert np.all(leaves[tree.capacity :] == 0.0), "padding leaves must stay empty"
    for parent, child in zip(tree.levels[:-1], tree.levels[1:], strict=True):
        sums = child.reshape(-1, FANOUT).sum(axis=1)
        np.testing.assert_array_equal(parent[: sums.size], sums)
        assert np.all(parent[sums.size :] == 0.0), "padding nodes must stay empty"
    assert tree.levels[0].size <= FLAT_TOP
    assert tree.tree.ndim == 1 and tree.tree.dtype == np.float64  # one flat float64 array
    assert tree.total == pytest.approx(oracle.sum(), rel=1e-12, abs=1e-12)


def check_prefix_bounds(tree: SumTree, oracle: np.ndarray, values: np.ndarray) -> None:
    """find_prefix returns a positive leaf whose cumulative interval contains each value."""
    leaves = tree.find_prefix(values)
    before = np.concatenate(([0.0], np.cumsum(oracle)))[leaves]
    assert np.all(oracle[leaves] > 0.0)
    tol = 1e-9 * max(1.0, oracle.sum())
    assert np.all(before - tol <= values)
    assert np.all(values < before + oracle[leaves] + tol)


@pytest.mark.parametrize("capacity", [1, 2, 3, 7, 100, 1024, 1025, 20_000, 40_000])
def test_thousands_of_random_batched_updates_match_numpy_oracle(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    oracle = np.zeros(capacity)
    for step in range(600):
        size = int(rng.integers(1, 65))
        idx = rng.integers(0, capacity, size)  # duplicates are common for small capacities
        vals = rng.exponential(size=size) * (rng.random(size) > 0.2)  # some zeros
        tree.set(idx, vals)
        for i, v in zip(idx, vals, strict=True):  # the slow obvious version: last write wins
            oracle[i] = v
        if step % 50 == 0 or step == 599:
            assert_tree_consistent(tree, oracle)
            np.testing.assert_array_equal(tree.get(np.arange(capacity)), oracle)
            if oracle.sum() > 0:
                check_prefix_bounds(tree, oracle, rng.random(256) * oracle.sum())


def test_duplicate_indices_last_write_wins() -> None:
    tree = SumTree(5)
    tree.set(np.array([2, 4, 2, 2, 4]), np.array([1.0, 2.0, 3.0, 7.0, 5.0]))
    np.testing.assert_array_equal(tree.get(np.arange(5)), [0, 0, 7.0, 0, 5.0])
    assert tree.total == 12.0


def test_prefix_search_hand_computed_and_boundaries() -> None:
    tree = SumTree(6)
    tree.set(np.arange(6), np.array([1.0, 0.0, 2.0, 0.0, 3.0, 0.0]))
    # cumulative intervals: leaf 0 [0,1), leaf 2 [1,3), leaf 4 [3,6)
    got = tree.find_prefix(np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.999, 6.0]))
    np.testing.assert_array_equal(got, [0, 0, 2, 2, 4, 4, 4])  # v == total -> last positive leaf


def test_zero_mass_leaves_are_never_returned_even_at_the_total() -> None:
    tree = SumTree(9)
    tree.set(np.array([0, 3]), np.array([0.1, 0.2]))
    got = tree.find_prefix(np.array([0.3, np.nextafter(0.3, 1.0), 0.1, 0.0]))
    assert set(got.tolist()) <= {0, 3}
    assert got[0] == 3 and got[1] == 3 and got[2] == 3 and got[3] == 0


@pytest.mark.parametrize("capacity", [40_000, 1_000_000])
def test_search_past_a_nodes_end_returns_its_last_positive_leaf_at_every_depth(
    capacity: int,
) -> None:
    # Levels below the top: 1 at 40,000 leaves, 2 at 1M. v == total runs past every node on the
    # right edge, whose last children are empty or padding; the answer is the last positive
    # leaf. Values that are powers of two keep every sum exact.
    tree = SumTree(capacity)
    idx = np.array([5, 1_100, 30_000, 30_001, 30_031])
    tree.set(idx, np.array([1.0, 2.0, 4.0, 0.0, 0.0]))
    got = tree.find_prefix(np.array([0.0, 0.5, 1.0, 2.5, 3.0, 6.5, 7.0]))
    np.testing.assert_array_equal(got, [5, 5, 1_100, 1_100, 30_000, 30_000, 30_000])
    leaves, values = tree.stratified(64, np.random.default_rng(0))
    assert set(leaves.tolist()) <= {5, 1_100, 30_000}
    np.testing.assert_array_equal(values, tree.get(leaves))
    assert tree.stratified(4, np.random.default_rng(0)) is not None
    assert SumTree(capacity).stratified(4, np.random.default_rng(0)) is None  # no mass


def test_float64_keeps_mass_at_a_million_leaves() -> None:
    tree = SumTree(1_000_000)
    tree.set(np.arange(1_000_000), np.full(1_000_000, 1e-3))
    tree.set(np.array([123_456]), np.array([1e-9]))
    assert tree.total == pytest.approx(1000.0 - 1e-3 + 1e-9, rel=1e-12)
    assert [lv.size for lv in tree.levels] == [977, 31_264, 1_000_448]  # a full row per node
    assert tree.nbytes <= 8.3 * 1_000_000  # one float64 per leaf plus about 3% of nodes


def test_bad_input_is_rejected() -> None:
    tree = SumTree(4)
    with pytest.raises(IndexError, match=r"out of range \[0, 4\)"):
        tree.set(np.array([4]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        tree.set(np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="positive total"):
        tree.find_prefix(np.array([0.0]))
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        SumTree(0)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 40),
    updates=st.lists(
        st.lists(st.tuples(st.integers(0, 39), st.floats(0.0, 100.0)), min_size=1, max_size=12),
        min_size=1,
        max_size=30,
    ),
)
def test_hypothesis_batched_updates_and_search(capacity: int, updates: list) -> None:
    tree = SumTree(capacity)
    oracle = np.zeros(capacity)
    for batch in updates:
        idx = np.array([i % capacity for i, _ in batch])
        vals = np.array([v for _, v in batch])
        tree.set(idx, vals)
        for i, v in zip(idx, vals, strict=True):
            oracle[i] = v
        assert_tree_consistent(tree, oracle)
    if oracle.sum() > 0:
        grid = np.linspace(0.0, oracle.sum(), 50, endpoint=False)
        check_prefix_bounds(tree, oracle, grid)
