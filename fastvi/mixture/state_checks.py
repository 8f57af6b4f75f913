"""The checks of a mixture fit's checkpointed ``FitState`` (``fastvi.io.resume_checks``):
its data description, chunk order and position, parameters, statistics and caches, moves,
truncated search and history, each against the estimator and the data that resume it.

Beside the estimators, not in ``fastvi.io``: the checks know the mixtures' classes (a
``Posterior``, a Bayesian estimator), and ``fastvi.io`` imports no estimator.
``fastvi.mixture.persistence`` registers ``check_resumed_state`` for ``validate_state``.
"""
import math

import numpy as np

from ..engine import steps
from ..io.resume_checks import _is_int, _shown, _what


def check_resumed_state(check, state, model, source):
    """``validate_state`` of a state that a mixture estimator resumes: a ``FitState``."""
    from ..engine.loop import FitState
    if type(state) is not FitState:
        check.fail("state", f"is {_what(state)} (expected the FitState of a mixture fit)")
    _check_fit_state(check, state, model, source)


def _check_fit_state(check, state, model, source):
    """``validate_state`` of a mixture fit's ``FitState``."""
    from ..engine.loop import ALGORITHMS
    n_chunks, n_features = len(source.chunk_bounds()), int(source.n_features)
    if state.algorithm not in ALGORITHMS:
        check.fail("algorithm", f"is {_shown(state.algorithm)} (expected one of "
                   f"{', '.join(ALGORITHMS)})")
    _check_description(check, state.data)
    n_pass = check.integer("n_pass", state.n_pass, 0)
    step_chunks = _check_step_chunks(check, state, n_chunks)
    position = _check_order(check, state, model, n_chunks, step_chunks)
    done = n_pass * n_chunks + position
    # every chunk of a pass counts one step (a minibatch of zero weight too): the step
    # sets the stochastic step size and the truncated search's random candidates
    if not _is_int(state.step) or state.step != done:
        check.fail("step", f"is {_shown(state.step)} (expected {done}, the chunks done: "
                   f"{n_pass} passes of {n_chunks} and {position} of this one)")
    check.generator("rng", state.rng)
    n_components = _check_parameters(check, state.params, model, n_features)
    _check_statistics(check, state, model, n_chunks, n_features, n_components, position,
                      step_chunks)
    _check_moves(check, state, model, steps.n_groups(state.algorithm, step_chunks, n_chunks),
                 n_features, n_components, position)
    _check_search(check, state, model, source, n_components)
    check.real("bound", state.bound, allow=(-math.inf,), expected="a number, or -inf")
    check.real("decider", state.decider, allow=(-math.inf,), expected="a number, or -inf")
    check.real("pass_bound_sum", state.pass_bound_sum)
    check.integer("pass_bound_count", state.pass_bound_count, 0, position,
                  expected=f"the minibatches of weight > 0 of this pass: 0..{position}")
    if not isinstance(state.converged, (bool, np.bool_)):
        check.fail("converged", f"is {_what(state.converged)} (expected True or False)")
    _check_history(check, state.history, n_pass)


def _check_description(check, data):
    """``data``: what ``describe_data`` recorded of the fitted data, or None."""
    if data is None:
        return
    check.type("data", data, dict, "the description of the fitted data, or None")
    for key in ("n_rows", "n_features", "n_chunks", "chunk_rows", "n_components"):
        check.integer(f"data[{key!r}]", data.get(key), 1)
    if data.get("fingerprint") is not None and type(data["fingerprint"]) is not str:
        check.fail("data['fingerprint']", f"is {_what(data['fingerprint'])} (expected a "
                   "hex digest, or None)")


def _check_step_chunks(check, state, n_chunks):
    """Chunks per step (a stochastic minibatch, a memoized batch); a batch pass is one
    step of every chunk.  Returns it."""
    stored = getattr(state, "step_chunks", 1)
    if state.algorithm == "batch":
        check.integer("step_chunks", stored, 1, expected="a positive integer (unused by "
                      "a batch fit)")
        return max(n_chunks, 1)
    if state.algorithm == "stochastic":
        # ceil(batch_size / chunk_size), whatever the rows: the last minibatch is short
        return check.integer("step_chunks", stored, 1, expected="the chunks per minibatch")
    return check.integer("step_chunks", stored, 1, max(n_chunks, 1),
                         expected=f"the chunks per batch: 1..{n_chunks}")


def _check_order(check, state, model, n_chunks, step_chunks=1):
    """The chunk order of the pass and the position in it; returns the position."""
    order = state.order
    if order is None:                  # between passes: the next pass makes its order
        return check.integer("position", state.position, 0, 0,
                             expected="0 between passes (order is None)")
    expected = f"each of the {n_chunks} chunks 0..{n_chunks - 1} once"
    check.type("order", order, list, f"a list of {expected}")
    seen = set()
    for index in order:
        if not _is_int(index) or not 0 <= index < n_chunks:
            check.fail("order", f"holds {_shown(index)}, not a chunk index (expected "
                       f"{expected})")
        if index in seen:
            check.fail("order", f"holds chunk {index} twice (expected {expected})")
        seen.add(index)
    if len(order) != n_chunks:
        check.fail("order", f"has {len(order)} chunks (expected {expected})")
    if not (model.shuffle and state.algorithm != "batch") and order != sorted(order):
        # as ChunkLoop._new_order makes it: a batch pass, or a fit without shuffle, reads
        # the chunks in order, and a batch pass sums their statistics in that order
        check.fail("order", f"is not 0..{n_chunks - 1} in order (expected the chunks in "
                   "order: a batch pass, or a fit without shuffle, reads them so)")
    if state.algorithm == "memoized" and step_chunks > 1 and len(order) == n_chunks:
        # whole batches of step_chunks consecutive chunks, each ascending
        m, p = step_chunks, 0
        while p < n_chunks:
            key = order[p] // m
            batch = list(range(key * m, min(key * m + m, n_chunks)))
            if order[p:p + len(batch)] != batch:
                check.fail("order", f"at {p} is not batch {key} (chunks {batch[0]}.."
                           f"{batch[-1]}) in order (expected whole batches of {m} chunks)")
            p += len(batch)
    position = state.position
    if _is_int(position) and position > len(order):
        check.fail("position", f"is {position}, beyond the order of {len(order)} chunks "
                   f"(expected 0..{len(order)})")
    return check.integer("position", position, 0, len(order))


def _parameter_shapes(covariance_type, n_components, n_features):
    """(shape, what it is) of the covariances (and precision factors) of a mixture."""
    k, d = n_components, n_features
    return {"full": ((k, d, d), f"{k} matrices {d} x {d}"),
            "tied": ((d, d), f"one {d} x {d} matrix"),
            "diag": ((k, d), f"{k} components of {d} features"),
            "spherical": ((k,), f"{k} components")}[covariance_type]


def _check_parameters(check, params, model, n_features):
    """The parameters (``_get_parameters``'s layout); returns their number of components:
    ``n_components``, or up to it for a fit with moves (merges, births and deletes change
    the live components)."""
    from .estimators import BayesianGaussianMixture
    from .vb import Posterior
    bayesian = isinstance(model, BayesianGaussianMixture)
    if bayesian:
        check.type("params", params, Posterior, "the Posterior of a BayesianGaussianMixture")
        means = params.means
    else:
        if type(params) is not tuple or len(params) != 4:
            check.fail("params", f"is {_what(params)} (expected the tuple (weights, means, "
                       "covariances, precisions_cholesky) of a GaussianMixture)")
        weights, means, covariances, factors = params
    n_components = model.n_components
    if (model._moves() and type(means) is np.ndarray and means.ndim == 2
            and 1 <= means.shape[0] <= n_components):
        n_components = means.shape[0]
    k, d = n_components, n_features
    what = f"{k} components"
    if bayesian:
        concentration = params.weight_concentration
        if model.weight_concentration_prior_type == "dirichlet_process":
            if type(concentration) is not tuple or len(concentration) != 2:
                check.fail("params.weight_concentration", f"is {_what(concentration)} "
                           f"(expected the pair of ({k},) arrays of the sticks' Beta "
                           "parameters)")
            for i, part in enumerate(concentration):
                field = f"params.weight_concentration[{i}]"
                check.positive(field, check.array(field, part, (k,), what))
        else:
            check.positive("params.weight_concentration",
                           check.array("params.weight_concentration", concentration, (k,),
                                       what))
        check.positive("params.mean_precision",
                       check.array("params.mean_precision", params.mean_precision, (k,), what))
        # a Wishart's degrees of freedom exceed D - 1 (its normaliser's digamma terms);
        # a Gamma's shape is positive
        low = d - 1.0 if model.covariance_type in ("full", "tied") else 0.0
        check.positive("params.degrees_of_freedom",
                       check.array("params.degrees_of_freedom", params.degrees_of_freedom,
                                   (k,), what), low, f"values > {low:g}")
        covariances, factors = params.covariances, params.precisions_cholesky
    else:
        weights = check.array("params.weights", weights, (k,), what)
        # float32 weights (a warm start's, published) sum to 1 to about 1e-7 per term
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-4:
            check.fail("params.weights", f"sum to {float(weights.sum())!r} with a minimum "
                       f"of {float(weights.min())!r} (expected weights >= 0 that sum to 1)")
    check.array("params.means", means, (k, d), f"{k} components of {d} features")
    _check_gaussians(check, "params", covariances, factors, model.covariance_type, k, d)
    return n_components


def _check_gaussians(check, field, covariances, factors, covariance_type, k, d):
    """Covariances and the upper triangular factors U of their precisions (U U^T)."""
    shape, what = _parameter_shapes(covariance_type, k, d)
    covariances = check.array(f"{field}.covariances", covariances, shape, what)
    factors = check.array(f"{field}.precisions_cholesky", factors, shape, what)
    if covariance_type in ("diag", "spherical"):
        check.positive(f"{field}.covariances", covariances, expected="positive variances")
        check.positive(f"{field}.precisions_cholesky", factors,
                       expected="positive precision factors")
        return
    one = covariance_type == "tied"
    matrices, upper = covariances.reshape(-1, d, d), factors.reshape(-1, d, d)
    # A positive diagonal is all that is cheap to ask of a covariance (a Cholesky
    # factorisation of float32 ones, a warm start's, may fail by rounding); the kernels
    # read the precision factor, and a triangular factor with a positive diagonal makes
    # a positive definite precision.
    bad = np.flatnonzero((np.diagonal(matrices, axis1=1, axis2=2) <= 0).any(axis=1))
    if bad.size:
        where = "" if one else f" of component {bad[0]}"
        check.fail(f"{field}.covariances{where}", "is not positive definite (a diagonal "
                   "entry <= 0)")
    bad = np.flatnonzero((np.diagonal(upper, axis1=1, axis2=2) <= 0).any(axis=1)
                         | (np.tril(upper, -1) != 0).any(axis=(1, 2)))
    if bad.size:
        where = "" if one else f" of component {bad[0]}"
        check.fail(f"{field}.precisions_cholesky{where}", "is not the factor of a positive "
                   "definite precision (expected an upper triangular matrix with a positive "
                   "diagonal)")


def _check_stats(check, field, stats, k, d, full, carried=None):
    """A ``SufficientStats`` of ``k`` components of ``d`` features.  ``carried``: what a
    step's partial sums carry on a fit with moves, ``(n_pairs or None, the proposal's
    components or None)``; elsewhere they carry nothing."""
    from ..engine.stats import SufficientStats
    check.type(field, stats, SufficientStats, f"the statistics of {k} components")
    what = f"{k} components of {d} features"
    nk = check.array(f"{field}.nk", stats.nk, (k,), f"{k} components")
    check.array(f"{field}.s1", stats.s1, (k, d), what)
    check.array(f"{field}.s2", stats.s2, (k, d, d) if full else (k, d), what)
    check.array(f"{field}.ref", stats.ref, (k, d), what)
    weight = check.real(f"{field}.weight", stats.weight)
    check.real(f"{field}.log_norm", stats.log_norm)
    # A memoized fit subtracts a chunk's old statistics from the sum: rounding may leave
    # a count of -1e-13, never one of a millionth of the weight.
    tolerance = 1e-6 * max(abs(weight), 1.0)
    if weight < -tolerance:
        check.fail(f"{field}.weight", f"is {weight!r} (expected a weight >= 0)")
    negative = np.flatnonzero(nk < -tolerance)
    if negative.size:
        check.fail(f"{field}.nk", f"has a negative count ({float(nk[negative[0]])!r}, "
                   f"component {negative[0]}; expected counts >= 0)")
    n_pairs, k_proposal = carried or (None, None)
    if (n_pairs is not None and stats.pair_loss is None) or (
            k_proposal is not None and stats.proposal is None):
        check.fail(field, "lacks the pass's move sums: a batch pass with moves checkpointed "
                   "by an earlier fastvi kept them per chunk (expected them in "
                   "the partial sums); start this fit afresh")
    if n_pairs is not None:
        check.array(f"{field}.pair_loss", stats.pair_loss, (n_pairs,), "a loss per pair")
    if k_proposal is not None:
        _check_stats(check, f"{field}.proposal", stats.proposal, k_proposal, d, full)
    for name, wanted in (("pair_loss", n_pairs), ("proposal", k_proposal)):
        if wanted is None and getattr(stats, name) is not None:
            check.fail(f"{field}.{name}", f"is {_what(getattr(stats, name))} (expected "
                       "None: the fit takes it off a step's statistics)")


def _check_partials(check, state, k, d, full, position, leaf, carried):
    """The step under way so far (``reduce.PairwiseSum`` blocks ``[start, stop, stats]`` of
    its leaves, consecutive from 0 to ``leaf``, the chunks of the step done).  A batch
    state written by a fastvi that summed left to right holds its sum in ``stats``
    instead, and no blocks; one written before steps (a batch pass at its end) may hold
    blocks up to the position.  Returns the blocks."""
    partials = getattr(state, "partials", None)
    if partials is None:
        partials = []
    check.type("partials", partials, list, "a list of [start, stop, statistics] blocks")
    if state.algorithm == "batch" and leaf == 0 and partials:
        leaf = position                 # an older fastvi's batch pass, all chunks added
    if partials and leaf == 0:
        check.fail("partials", f"holds {len(partials)} blocks (expected none between "
                   "steps)")
    expected_start = 0
    for i, block in enumerate(partials):
        field = f"partials[{i}]"
        if not isinstance(block, list) or len(block) != 3:
            check.fail(field, f"is {_what(block)} (expected [start, stop, statistics])")
        start, stop, stats = block
        check.integer(f"{field}[0]", start, expected_start, expected_start,
                      expected=f"{expected_start}: the blocks follow each other from chunk 0")
        check.integer(f"{field}[1]", stop, start + 1, leaf,
                      expected=f"a chunk after {start} and at most {leaf}, the chunks of "
                      "the step done")
        _check_stats(check, f"{field}[2]", stats, k, d, full, carried)
        expected_start = stop
    if leaf and not partials and state.algorithm != "batch":
        check.fail("partials", f"is empty (expected the sums of the {leaf} chunks of the "
                   "step done)")
    if partials and expected_start != leaf:
        check.fail("partials", f"end at chunk {expected_start} (expected {leaf}, the "
                   "chunks of the step done)")
    if partials and state.algorithm == "batch" and state.stats is not None:
        check.fail("stats", f"is {_what(state.stats)} (expected None: a batch pass keeps "
                   "its sum so far in partials)")
    return partials


def _carried(state, k_default):
    """What the partial sums of a pass with moves carry: ``(n_pairs, proposal's K)``."""
    pairs, proposal = state.merge_pairs, state.proposal
    n_pairs = (pairs.shape[0] if type(pairs) is np.ndarray and pairs.ndim == 2 else None)
    k_proposal = None
    if isinstance(proposal, dict):
        means = getattr(proposal.get("params"), "means", None)
        k_proposal = (means.shape[0] if type(means) is np.ndarray and means.ndim == 2
                      else k_default)
    return n_pairs, k_proposal


def _check_statistics(check, state, model, n_chunks, d, k, position, step_chunks):
    """``stats``, the step under way, and a memoized fit's cache of every batch's
    statistics and entropy (a batch: ``step_chunks`` consecutive chunks)."""
    algorithm, full = state.algorithm, model._full_stats
    n_groups = steps.n_groups(algorithm, step_chunks, n_chunks)
    memo = check.chunk_keys("memo", state.memo, n_groups, "statistics")
    entropy = check.chunk_keys("memo_entropy", state.memo_entropy, n_groups, "entropies")
    if algorithm != "memoized" and (memo or entropy):
        check.fail("memo", f"holds {len(memo)} batches' statistics (expected none: a "
                   f"{algorithm} fit caches none)")
    leaf = steps.leaves_done(algorithm, state.order, position, step_chunks, n_chunks)
    partials = _check_partials(check, state, k, d, full, position, leaf,
                               _carried(state, k))
    needed = (algorithm == "stochastic" or (algorithm == "memoized" and memo)
              or (algorithm == "batch" and position > 0 and not partials))
    if needed:
        _check_stats(check, "stats", state.stats, k, d, full)
    elif state.stats is not None:
        check.fail("stats", f"is {_what(state.stats)} (expected None: a {algorithm} fit has "
                   "no statistics before its first step)")
    if algorithm != "memoized":
        return
    # the first pass caches the batches done, order[:position] less a batch under way;
    # the later ones every batch
    if state.n_pass == 0:
        done = state.order[:position - leaf] if state.order is not None else []
        cached = {index // step_chunks for index in done}
        which = "the batches done in the first pass"
    else:
        cached, which = set(range(n_groups)), "every batch, after the first pass"
    for key in memo:
        if key not in cached:
            check.fail("memo", f"holds batch {key} (expected {which})")
    for key in sorted(cached):
        if key not in memo:
            check.fail("memo", f"lacks batch {key} (expected {which})")
    check.same_keys("memo_entropy", entropy, memo, "memo")
    for key, stats in memo.items():
        _check_stats(check, f"memo[{key}]", stats, k, d, full)
        check.real(f"memo_entropy[{key}]", entropy[key])


def _check_moves(check, state, model, n_groups, d, k, position):
    """The state of merge, birth and delete moves; their per-batch caches are keyed by
    the batches (``n_groups``: a memoized fit's; a batch pass's one, 0, at its end)."""
    from ..engine.backend import KernelParams
    components = f"components 0..{k - 1}"
    pairs = state.merge_pairs
    losses = check.chunk_keys("memo_pair_loss", state.memo_pair_loss, n_groups, "losses")
    proposed = check.chunk_keys("memo_proposal", state.memo_proposal, n_groups, "statistics")
    mid_pass = state.order is not None and position < len(state.order)
    if state.algorithm == "batch" and mid_pass and (losses or proposed):
        check.fail("memo_pair_loss" if losses else "memo_proposal",
                   "holds a batch pass's sums before its end (expected none: the pass "
                   "carries them in partials)")
    if pairs is None:
        if losses:
            check.fail("memo_pair_loss", f"holds {len(losses)} chunks' losses (expected none: "
                       "merge_pairs is None)")
    else:
        if (type(pairs) is not np.ndarray or pairs.ndim != 2 or pairs.shape[1] != 2
                or pairs.dtype.kind != "i"):
            check.fail("merge_pairs", f"is {_what(pairs)} (expected a (P, 2) integer array "
                       "of the pairs of components to try, or None)")
        n_pairs = pairs.shape[0]
        bad = np.flatnonzero((pairs[:, 0] < 0) | (pairs[:, 0] >= pairs[:, 1])
                             | (pairs[:, 1] >= k))
        if bad.size:
            j, i = pairs[bad[0]]
            check.fail("merge_pairs", f"holds ({j}, {i}) (expected pairs j < k of "
                       f"{components})")
        for key, loss in losses.items():
            check.array(f"memo_pair_loss[{key}]", loss, (n_pairs,), "a loss per pair")
    proposal = state.proposal
    entropy = check.chunk_keys("memo_proposal_entropy", state.memo_proposal_entropy, n_groups,
                               "entropies")
    if proposal is None:
        if proposed or entropy:
            check.fail("memo_proposal", f"holds {len(proposed)} chunks' statistics "
                       "(expected none: proposal is None)")
    else:
        check.type("proposal", proposal, dict, "a birth or delete proposal, or None")
        move = proposal.get("move")
        if move not in ("birth", "delete"):
            check.fail("proposal['move']", f"is {_shown(move)} (expected 'birth' or 'delete')")
        targets = proposal.get("components")
        check.type("proposal['components']", targets, list, f"a list of {components}")
        for target in targets:
            check.integer("proposal['components']", target, 0, k - 1, expected=components)
        if move == "birth":
            into = check.type("proposal['into']", proposal.get("into"), list,
                              "a list of how many components each target becomes")
            if len(into) != len(targets):
                check.fail("proposal['into']", f"has {len(into)} entries (expected "
                           f"{len(targets)}, one per target)")
            for count in into:
                check.integer("proposal['into']", count, 2)
        params = check.type("proposal['params']", proposal.get("params"), KernelParams,
                            "the KernelParams of the proposal")
        means = params.means
        k_new = model.n_components
        if type(means) is np.ndarray and means.ndim == 2:
            k_new = means.shape[0]
            if not 1 <= k_new <= model.n_components:
                check.fail("proposal['params'].means", f"has {k_new} components (expected "
                           f"1..{model.n_components}, n_components the cap)")
        check.array("proposal['params'].means", means, (k_new, d),
                    f"{k_new} components of {d} features")
        check.array("proposal['params'].c", params.c, (k_new,), f"{k_new} components")
        full = model._full_stats
        check.array("proposal['params'].factor", params.factor,
                    (k_new, d, d) if full else (k_new, d), f"{k_new} components")
        for key, stats in proposed.items():
            _check_stats(check, f"memo_proposal[{key}]", stats, k_new, d, full)
        check.same_keys("memo_proposal_entropy", entropy, proposed, "memo_proposal")
        for key, value in entropy.items():
            check.real(f"memo_proposal_entropy[{key}]", value)
    # births and deletes take turns (next_move), each trying its targets once (tried)
    # until the components change; a kind with none left is settled
    proposing = tuple(kind for kind in ("birth", "delete") if kind in model._moves())
    check.integer("proposal_wait", state.proposal_wait, 0, 1,
                  expected="0 or 1: a pass with a proposal is followed by one without")
    if proposing:
        check.integer("next_move", state.next_move, 0, len(proposing) - 1,
                      expected=f"an integer in 0..{len(proposing) - 1}: one of the "
                      f"{len(proposing)} kinds of move")
    else:
        check.integer("next_move", state.next_move, 0, 0,
                      expected="0: this fit makes no births or deletes")
    settled = check.type("moves_settled", state.moves_settled, list,
                         f"a list of the kinds of move ({', '.join(proposing) or 'none'})")
    for kind in settled:
        if kind not in proposing or settled.count(kind) > 1:
            check.fail("moves_settled", f"holds {_shown(kind)} (expected each of "
                       f"{', '.join(proposing) or 'no kind'} at most once)")
    tried = check.type("tried", state.tried, dict, "a dict of the components each kind of "
                       "move tried")
    for kind, targets in tried.items():
        if kind not in proposing:
            check.fail("tried", f"has the key {_shown(kind)} (expected "
                       f"{', '.join(proposing) or 'none'})")
        check.type(f"tried[{kind!r}]", targets, list, "a list of component indices")
        for target in targets:
            check.integer(f"tried[{kind!r}]", target, 0, k - 1, expected=components)


def _check_search(check, state, model, source, k):
    """A truncated fit's per-row supports, neighbour lists and seed."""
    from ..engine.truncation import SUPPORT_DTYPE, FileSupports, MemorySupports
    truncation = model._truncation()
    if truncation is None:            # a dense fit: none used
        return
    n_active = truncation.n_active
    if not truncation.exhaustive:
        supports = state.supports
        if type(supports) is MemorySupports:
            array = check.array("supports", getattr(supports, "array", None),
                                (source.n_rows, n_active),
                                f"{n_active} components for each of {source.n_rows} rows",
                                kind="i", dtype=np.dtype(SUPPORT_DTYPE))
            _check_support_rows(check, "supports", array, 0, n_active, k)
        elif type(supports) is FileSupports:
            # its file's dataset was checked against these when the state was read; its
            # rows (which may be newer than the checkpoint: valid all the same) are read
            # here a block at a time, as the kernels would read them
            if (supports.n_rows, supports.n_active) != (source.n_rows, n_active):
                check.fail("supports", f"keeps {supports.n_active} components for each of "
                           f"{supports.n_rows} rows (expected {n_active} for each of "
                           f"{source.n_rows})")
            block = max(1, (1 << 22) // n_active)
            for start in range(0, supports.n_rows, block):
                _check_support_rows(check, f"supports (the file {supports.path!r})",
                                    supports.rows(start, start + block), start, n_active, k)
        else:
            check.fail("supports", f"is {_what(supports)} (expected the per-row supports of "
                       "a truncated fit)")
    if state.neighbours is not None:
        width = truncation.n_candidates - truncation.n_random
        n_lists = 0 if truncation.exhaustive or width == 0 else min(width, k)
        neighbours = check.array("neighbours", state.neighbours, (k, n_lists),
                                 f"{n_lists} neighbours of each of {k} components", kind="i",
                                 dtype=np.dtype(np.int64))
        check.indices("neighbours", neighbours, 0, k - 1, f"components 0..{k - 1}")
    check.integer("search_seed", state.search_seed, 0, (1 << 63) - 1)


def _check_support_rows(check, field, rows, first, n_active, k):
    """Rows ``first:first + len(rows)`` of the per-row supports: each unseen (-1
    throughout) or the row's support, ``n_active`` distinct components (the kernel reads
    every entry of a seen row as a component)."""
    check.indices(field, rows, -1, k - 1, f"components 0..{k - 1}, or -1 for none yet")
    order = np.sort(rows, axis=1)
    seen = order[:, 0] >= 0
    mixed = np.flatnonzero(~seen & (order[:, -1] >= 0))
    if mixed.size:
        check.fail(field, f"row {first + mixed[0]} is {rows[mixed[0]].tolist()} (expected "
                   f"{n_active} components, or -1 throughout before the row is seen)")
    twice = np.flatnonzero(seen & (order[:, 1:] == order[:, :-1]).any(axis=1))
    if twice.size:
        check.fail(field, f"row {first + twice[0]} is {rows[twice[0]].tolist()} (expected "
                   f"{n_active} distinct components)")


def _check_history(check, history, n_pass):
    """One record per completed pass."""
    check.type("history", history, list, f"a list of the {n_pass} passes' records")
    if len(history) != n_pass:
        check.fail("history", f"has {len(history)} records (expected {n_pass}, one per "
                   "completed pass)")
    for i, record in enumerate(history):
        field = f"history[{i}]"
        check.type(field, record, dict, "a pass's record")
        check.integer(f"{field}['pass']", record.get("pass"), i + 1, i + 1)
        check.real(f"{field}['bound']", record.get("bound"), allow=(-math.inf,),
                   expected="a number")
        if "validation" in record:
            check.real(f"{field}['validation']", record["validation"], allow=(-math.inf,),
                       expected="a number")
        for j, move in enumerate(check.type(f"{field}['moves']", record.get("moves", []),
                                            list, "a list of moves")):
            check.type(f"{field}['moves'][{j}]", move, dict, "a move's record")
