"""How a pass is cut into steps: the layout that the fit loop follows, the checkpoint
checks verify and the estimators choose (issue 28).

A step is the chunks whose statistics make one update: a batch pass is one step; a
stochastic minibatch is ``step_chunks`` chunks of a random order of all chunks; a
memoized fit's chunks make fixed batches of ``step_chunks`` consecutive chunks (bnpy's
nBatch), each one cache, which a pass visits in a random order, each batch's chunks
ascending.  Everything here is a function of the algorithm, the chunk order and the
counts, so the loop and the checks of a resumed state cannot disagree about it.
"""

# A memoized fit's default batches (n_batches=None): at most this many caches, and at
# most this many bytes for them and the tree of sums above them.
MEMO_BATCHES = 64
MEMO_BYTES = 256 << 20


def chunks_per_step(algorithm, step_chunks, n_chunks):
    """Chunks per step: every chunk for a batch pass, else ``step_chunks`` (the last
    step of a pass may have fewer)."""
    return max(n_chunks, 1) if algorithm == "batch" else step_chunks


def n_groups(algorithm, step_chunks, n_chunks):
    """The memoized fit's batches (a batch pass: one), each one cache."""
    return -(-n_chunks // chunks_per_step(algorithm, step_chunks, n_chunks))


def pass_order(algorithm, shuffle, rng, step_chunks, n_chunks):
    """The chunks of a pass, in the order visited: ascending (batch, or no shuffle); a
    stochastic fit's chunks in a random order; a memoized fit's batches in a random
    order, each batch's chunks ascending (the same chunks make a batch every pass)."""
    if not shuffle or algorithm == "batch":
        return list(range(n_chunks))
    if algorithm == "stochastic":
        return [int(i) for i in rng.permutation(n_chunks)]
    m = step_chunks
    return [index for key in rng.permutation(n_groups(algorithm, m, n_chunks))
            for index in range(int(key) * m, min(int(key) * m + m, n_chunks))]


def step_at(algorithm, order, position, step_chunks, n_chunks):
    """The step that holds ``position`` (< len(order)) of the pass: ``(first, stop,
    key)``, its positions ``[first, stop)`` in ``order`` and a memoized batch's number
    (its cache's key; None for the others)."""
    m = chunks_per_step(algorithm, step_chunks, n_chunks)
    if algorithm == "memoized":
        index = order[position]
        key = index // m
        first = position - (index - key * m)
        return first, first + min(m, n_chunks - key * m), key
    first = position - position % m
    return first, min(first + m, len(order)), None


def leaves_done(algorithm, order, position, step_chunks, n_chunks):
    """How many chunks of the step under way are done at ``position`` (0 at a step's
    boundary, and between passes)."""
    if order is None or position in (0, len(order)):
        return 0
    return position - step_at(algorithm, order, position, step_chunks, n_chunks)[0]


def minibatches_before(n_pass, step, position, first, step_chunks, n_chunks):
    """t of the stochastic step size: the minibatches taken before the one at position
    ``first`` of the pass (``step``, ``position``: the chunks done in all and in this
    pass).  One chunk each: the chunks done (``partial_fit``'s calls add up, each a pass
    of its own); else whole passes' worth and this pass's."""
    if step_chunks == 1:
        return step - (position - first)
    return n_pass * -(-n_chunks // step_chunks) + first // step_chunks


def minibatch_chunks(batch_size, chunk_size):
    """Chunks per stochastic minibatch: one, unless ``batch_size`` > ``chunk_size``."""
    return 1 if batch_size is None else max(1, -(-batch_size // chunk_size))


def memoized_batch_chunks(n_batches, n_chunks, stats_bytes):
    """Chunks per memoized batch for ``n_batches`` (None: one batch per chunk up to
    ``MEMO_BATCHES``, then fewer, their caches and tree within ``MEMO_BYTES``);
    ``stats_bytes``: one cache's size."""
    if n_batches is None:
        n_batches = min(n_chunks, MEMO_BATCHES, max(2, MEMO_BYTES // (2 * stats_bytes)))
    return -(-n_chunks // max(1, min(n_batches, n_chunks)))


def stats_bytes(n_components, n_features, full):
    """Bytes of one set of statistics (a memoized batch's cache): counts, first moments,
    second moments (full or diagonal) and reference points, float64."""
    k, d = n_components, n_features
    return 8 * k * (1 + d + (d * d if full else d) + d)


def resume_refusal(algorithm, stored, wanted, n_chunks):
    """Why a checkpoint of ``stored`` chunks a step cannot go on with settings that make
    ``wanted`` (a memoized fit's caches are per batch; a minibatch is its step size's
    unit), naming what to give; None when it can."""
    if algorithm == "batch" or type(stored) is not int or stored == wanted:
        return None
    if algorithm == "memoized":
        what = f"n_batches={-(-n_chunks // max(stored, 1))}"
    else:
        what = "the batch_size and chunk_size of the checkpointed fit"
    unit = "batch" if algorithm == "memoized" else "minibatch"
    return (f"the checkpoint's fit takes {stored} chunk(s) per {unit}, these settings "
            f"{wanted}: resume with {what}")


__all__ = ["MEMO_BATCHES", "MEMO_BYTES", "chunks_per_step", "leaves_done",
           "memoized_batch_chunks", "minibatch_chunks", "minibatches_before", "n_groups",
           "pass_order", "resume_refusal", "stats_bytes", "step_at"]
