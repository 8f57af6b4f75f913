"""Sums of chunk statistics in one fixed binary tree over the chunk indices.

A pass's statistics are a sum over chunks.  fastvi adds them pairwise, in a tree whose
shape depends on the number of chunks alone: the chunks ``[lo, hi)`` of a node split at
``lo + h``, ``h`` the largest power of two below ``hi - lo``, and a node's sum is its left
child's plus its right child's (left operand first).  So the result is the same bits
whatever order the chunks arrive in, on whichever backend (local threads, a GPU, Dask
workers that add subtrees themselves), and it is more accurate than a running sum: the
rounding error of pairwise summation grows as O(log n) instead of O(n) (Higham 1993,
"The accuracy of floating point summation", SIAM J. Sci. Comput. 14(4), section 3).

Three forms of the same tree:

* ``PairwiseSum``: chunks added in index order (a batch pass), keeping O(log n) partial
  sums: blocks of equal size are merged as soon as they exist (a binary counter), and the
  final fold adds the remaining blocks from the right.  Its blocks are plain data (a
  checkpoint holds them).
* ``ChunkTree``: chunks set in any order and replaced (a memoized pass's cache); every
  node of the tree is kept, so a replaced leaf costs O(log n) additions.
* ``tree_sum``: the sum of a dict of chunk values at once.

Values are anything with ``+`` (``SufficientStats``, floats, arrays); a chunk that is
absent counts as nothing (a node with one present child is that child, unchanged).
"""


def split(lo, hi):
    """Where the tree splits the chunks ``[lo, hi)`` (``hi - lo >= 2``)."""
    return lo + (1 << ((hi - lo - 1).bit_length() - 1))


def _add(left, right):
    if left is None:
        return right
    if right is None:
        return left
    return left + right


def tree_sum(values, n_chunks, lo=0, hi=None):
    """The tree sum of ``values`` (dict chunk index -> value) over the chunks ``[lo, hi)``
    (default: all ``n_chunks``); None when none of them is present."""
    hi = n_chunks if hi is None else hi
    if hi - lo == 1:
        return values.get(lo)
    if hi <= lo:
        return None
    middle = split(lo, hi)
    return _add(tree_sum(values, n_chunks, lo, middle), tree_sum(values, n_chunks, middle, hi))


class PairwiseSum:
    """The tree sum of chunks that arrive in index order, from 0 (a batch pass).

    ``blocks`` is a list of ``[start, stop, value]``: the sums of consecutive runs of
    chunks, each run a whole subtree of the tree (sizes decreasing powers of two), so at
    most log2(n) + 1 of them.  A pass resumed from a checkpoint goes on from its blocks.
    """

    def __init__(self, blocks=None):
        self.blocks = [list(block) for block in (blocks or [])]

    @property
    def count(self):
        """The chunks added so far."""
        return self.blocks[-1][1] if self.blocks else 0

    def add(self, index, value):
        """Add chunk ``index``, which must be the next one (``count``)."""
        self.add_block(index, index + 1, value)

    def add_block(self, start, stop, value):
        """Add the sum of chunks ``[start, stop)``, a node of the tree (an aligned run,
        as ``aligned_runs`` cuts them; its sum in the tree's order, as ``tree_sum``
        adds it) that starts at the next chunk (``count``)."""
        if start != self.count or stop <= start:
            raise ValueError(f"chunks {start}:{stop} added to a pairwise sum that expects "
                             f"chunk {self.count} next")
        self.blocks.append([start, stop, value])
        # merge the last two runs while they are siblings in the tree: equal sizes, the
        # left one starting at a multiple of the pair's size
        while len(self.blocks) >= 2:
            (a, b, left), (c, d, right) = self.blocks[-2], self.blocks[-1]
            if b - a != d - c or a % (2 * (b - a)) != 0:
                break
            self.blocks[-2:] = [[a, d, _add(left, right)]]

    def total(self):
        """The tree sum of the chunks added (all of them, at the end of a pass): the
        remaining runs folded from the right, as the tree nests them."""
        total = None
        for _, _, value in reversed(self.blocks):
            total = _add(value, total)
        return total


def aligned_runs(start, stop, largest):
    """``[start, stop)`` cut into runs that are nodes of the tree of any number of chunks
    >= ``stop``: each ``[a, a + 2^j)`` with ``a`` a multiple of ``2^j`` and ``2^j <=
    largest``, as long as can be (so a worker may add a run's chunks itself, in the
    tree's order, and send one sum).  An aligned run inside ``[0, n)`` is a node of the
    tree over n chunks: the tree splits [0, n) at a power of two p, a multiple of any
    smaller power, so the run lies on one side, and so on down."""
    largest = max(1, int(largest))
    runs = []
    while start < stop:
        size = 1
        while (size * 2 <= largest and start % (size * 2) == 0
               and start + size * 2 <= stop):
            size *= 2
        runs.append((start, start + size))
        start += size
    return runs


class ChunkTree:
    """Every node of the tree over ``n_chunks`` chunks, for leaves set in any order and
    replaced (a memoized fit's cache).  ``set(index, value)`` returns the root: the tree
    sum of the leaves set so far, the same bits as ``tree_sum`` of them."""

    def __init__(self, n_chunks, values=None):
        self.n_chunks = n_chunks
        self.nodes = {}          # (lo, hi) -> the sum of the present leaves below, or None
        values = values or {}
        if n_chunks > 0:
            self._build(0, n_chunks, values)

    def _build(self, lo, hi, values):
        if hi - lo == 1:
            value = values.get(lo)
        else:
            middle = split(lo, hi)
            value = _add(self._build(lo, middle, values), self._build(middle, hi, values))
        self.nodes[(lo, hi)] = value
        return value

    @property
    def root(self):
        return self.nodes.get((0, self.n_chunks))

    def set(self, index, value):
        """Put ``value`` at leaf ``index`` and recompute the nodes above it; the root."""
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} of {self.n_chunks}")
        path = []
        lo, hi = 0, self.n_chunks
        while hi - lo > 1:
            path.append((lo, hi))
            middle = split(lo, hi)
            lo, hi = (lo, middle) if index < middle else (middle, hi)
        self.nodes[(lo, hi)] = value
        for lo, hi in reversed(path):
            middle = split(lo, hi)
            self.nodes[(lo, hi)] = _add(self.nodes[(lo, middle)], self.nodes[(middle, hi)])
        return self.root
