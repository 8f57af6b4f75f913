"""The fit loop over chunks: batch, stochastic and memoized, resumable at any chunk.

All three algorithms ask a backend (``fastvi.engine.backend``) for the statistics of the
chunks of a chunk source and feed the model's map from statistics to parameters; they
differ only in how the chunk statistics are added up:

* ``batch``: the exact sum over all chunks under fixed parameters, then one update (EM
  or VB-EM).  Equal, bit for bit, to the in-memory fit for the same chunk size.
* ``stochastic`` (Hoffman, Blei, Wang & Paisley 2013, "Stochastic variational inference",
  eq. 25-26; for maximum likelihood, Cappe & Moulines 2009, stepwise EM): after each
  minibatch B (one chunk, or ``step_chunks`` chunks of a random order of all chunks),
  ``S <- (1 - rho_t) S + rho_t (N / |B|) S_B`` with ``rho_t = (t + tau)^-kappa``, t
  counting minibatches, then the update from S.  Because the VB update is
  ``lambda = lambda_0 + S`` in natural parameters, blending the statistics in one frame is
  exactly Hoffman's blend of natural parameters.
* ``memoized`` (Hughes & Sudderth 2013, "Memoized online variational inference for
  Dirichlet process mixture models"): the chunks make fixed batches of ``step_chunks``
  consecutive chunks (their nBatch); each batch's statistics are cached, S is their sum,
  recomputed when a batch's cache is replaced, and the exact update follows every batch.
  Each pass visits the batches in a seeded random order.  With one batch this is batch
  EM, bit for bit.
  After the first pass this is coordinate ascent on the ELBO, which therefore never
  decreases.  The first pass computes every chunk under the initial parameters and
  updates once, at its end, as a batch pass: fitted to the chunks seen so far, the
  parameters of a first pass over rows sorted by cluster went where the first chunks
  were, and the fit never recovered (16 clusters in 16 chunks: 14 components used and an
  adjusted Rand index of 0.73, against batch's 16 and 0.998; tests/test_streaming.py).

Each algorithm proceeds in steps: a batch pass is one step; a stochastic minibatch and a
memoized batch are one each (their layout: ``fastvi.engine.steps``).  A step's chunks are computed under the same parameters and
added, with the merge candidates' losses and a proposal's statistics they carry, in the
pairwise tree of ``fastvi.engine.reduce`` over their places in the step (a backend may
hand back sums of whole subtrees: a Dask worker adds its runs of chunks); the step so
far is ``FitState.partials``, so a checkpoint may fall mid-step.  A memoized fit's S and
its cached entropies are the same tree over its batches.  The trees' shapes depend on
the numbers of chunks and batches only.  So the bits do not depend on the order in which the chunks
arrive, nor on the backend that computed them.

The whole state lives in one ``FitState`` that is updated only between chunks, so a
checkpoint written there resumes to the same result as an uninterrupted run.
"""
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from ..data import interrupts
from ..data.checks import InvalidParameterError
from . import steps
from .backend import Search, get_backend
from .reduce import ChunkTree, PairwiseSum, aligned_runs, tree_sum

ALGORITHMS = ("batch", "stochastic", "memoized")


class ResumeMismatch(ValueError):
    """A checkpointed state does not belong to this model or these data."""


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a fit at a chunk boundary; ``state`` is where it stood (and what a
    checkpoint, if any, now holds: ``path`` is its file, or None)."""

    def __init__(self, state, path=None, checkpointed=False):
        if path is None:
            given = ("the checkpoint callable was given it" if checkpointed
                     else "no checkpoint was written")
            message = (f"fit interrupted; {given}: this exception's .state is where it "
                       "stood (fit(..., resume=exc.state) goes on)")
        else:
            message = (f"fit interrupted; the checkpoint {path} holds where it stood: "
                       f"fit(..., resume=fastvi.load_checkpoint({path!r})[0]) goes on")
        super().__init__(message)
        self.state = state
        self.path = path


@dataclass
class FitState:
    """Everything a fit needs to go on from the chunk where it stopped."""

    algorithm: str
    params: object                    # the model's parameters (``_get_parameters``)
    stats: object = None              # batch: the pass's sum, at its end; stochastic: S;
                                      # memoized: the tree sum of ``memo``
    partials: list = field(default_factory=list)      # the step so far (a batch pass, a
                                      # minibatch, a memoized batch), as the [start, stop,
                                      # stats] blocks of a reduce.PairwiseSum of its leaves
    memo: dict = field(default_factory=dict)          # memoized: batch -> stats
    memo_entropy: dict = field(default_factory=dict)  # memoized: batch -> sum of H(q(z_n))
    merge_pairs: object = None        # merge moves: the pass's candidate pairs (P, 2)
    memo_pair_loss: dict = field(default_factory=dict)  # merge moves: batch -> (P,) losses
                                      # (a batch pass: one, 0, at its end)
    proposal: dict = None             # birth/delete: the pass's proposal ("params": KernelParams)
    memo_proposal: dict = field(default_factory=dict)   # batch -> its stats under the proposal
    memo_proposal_entropy: dict = field(default_factory=dict)   # batch -> H under the proposal
    step_chunks: int = 1              # stochastic, memoized: chunks per minibatch or batch
    proposal_wait: int = 0            # birth/delete: passes before the next round
    moves_settled: list = field(default_factory=list)   # kinds with nothing left to try
    tried: dict = field(default_factory=dict)   # kind -> positions tried since the last change
    next_move: int = 0                # the kind a round tries first (they take turns)
    n_pass: int = 0                   # completed passes
    step: int = 0                     # chunks processed in all (t of the step size)
    position: int = 0                 # next index into ``order``
    order: list = None                # chunk order of the current pass
    rng: object = None                # numpy Generator (shuffling)
    bound: float = -np.inf            # the bound of the last pass, per row
    decider: float = -np.inf          # the value convergence is judged on (bound or held-out)
    pass_bound_sum: float = 0.0       # stochastic: sum of the minibatches' log-norm per row
    pass_bound_count: int = 0         # stochastic: minibatches in that sum (weight > 0)
    supports: object = None           # truncated q: per-row supports (MemorySupports)
    neighbours: np.ndarray = None     # truncated q: the search's neighbour lists this pass
    search_seed: int = 0              # truncated q: seed of the random candidates
    converged: bool = False
    history: list = field(default_factory=list)       # one dict per completed pass
    data: dict = None                 # what was fitted (``describe_data``); checked on resume


def describe_data(source, sample_weight, n_components, fingerprint=True):
    """What a resumed fit must find again: the shape, chunking and a fingerprint of the
    rows and weights of the fit, with the number of components.

    The fingerprint is a BLAKE2b hash of the first and the last chunk as read (in the
    working dtype) and of the whole weight vector: two chunk reads, however large the
    data, and it catches a file regenerated or edited at either end, or other weights.
    """
    described = {"n_rows": int(source.n_rows), "n_features": int(source.n_features),
                 "n_chunks": int(source.n_chunks), "chunk_rows": int(source.chunk_rows),
                 "n_components": int(n_components), "fingerprint": None}
    if fingerprint:
        digest = hashlib.blake2b(digest_size=16)
        bounds = source.chunk_bounds()
        ends = [bounds[0]] if len(bounds) == 1 else [bounds[0], bounds[-1]]
        for start, stop in ends:
            digest.update(np.ascontiguousarray(source.read(start, stop)).tobytes())
        if sample_weight is not None:
            digest.update(np.ascontiguousarray(sample_weight, dtype=np.float64).tobytes())
        described["fingerprint"] = digest.hexdigest()
    return described


def check_resumable(state, described, algorithm):
    """Refuse to resume ``state`` on other data or another model (``ResumeMismatch``
    saying what differs); a state without a description (made by hand) is taken on trust."""
    if not isinstance(state, FitState):
        raise InvalidParameterError(f"resume must be a FitState (the state that "
                                    f"fastvi.load_checkpoint returns), got "
                                    f"{type(state).__name__}")
    if state.algorithm != algorithm:
        raise ResumeMismatch(f"the checkpoint was written by algorithm="
                             f"{state.algorithm!r}, not {algorithm!r}")
    stored = state.data
    if stored is None or not _well_formed(stored):
        # None (a state made by hand) is taken on trust; a garbled description is
        # fastvi.io.checkpoint.validate_state's to refuse, naming the file and the key
        return
    if stored["n_components"] != described["n_components"]:
        raise ResumeMismatch(f"the checkpoint is of a fit with n_components="
                             f"{stored['n_components']}, not {described['n_components']}")
    shape = (stored["n_rows"], stored["n_features"])
    if shape != (described["n_rows"], described["n_features"]):
        raise ResumeMismatch(f"the checkpoint is of a fit to {shape[0]} x {shape[1]} rows; "
                             f"the data given are {described['n_rows']} x "
                             f"{described['n_features']}")
    chunking = (stored["n_chunks"], stored["chunk_rows"])
    if chunking != (described["n_chunks"], described["chunk_rows"]):
        raise ResumeMismatch(f"the checkpoint is of a fit read in {chunking[0]} chunks of up "
                             f"to {chunking[1]} rows; these data are read in "
                             f"{described['n_chunks']} of up to {described['chunk_rows']} "
                             "(resume with the same chunk size)")
    if stored["fingerprint"] is not None and stored["fingerprint"] != described["fingerprint"]:
        raise ResumeMismatch("the data (or sample_weight) changed since the checkpoint was "
                             "written: their first and last chunks do not hash as they did; "
                             "resume with the same data, or start the fit afresh")


def _well_formed(described):
    """Whether ``described`` has the form of ``describe_data``'s dict."""
    counts = ("n_rows", "n_features", "n_chunks", "chunk_rows", "n_components")
    return (type(described) is dict
            and all(type(described.get(key)) is int for key in counts)
            and type(described.get("fingerprint")) in (str, type(None)))


def expected_log_rho_sum(stats, params):
    """sum_n w_n sum_k r_nk log rho_nk under ``params`` for the q(z) behind ``stats``.

    Linear in the statistics: sum_k N_k c_k - 1/2 tr(P_k S2_k), with S2 centred on the
    kernel's means (the kernel's own form, summed).  With the kernel's log-normaliser this
    gives the entropy of cached responsibilities, which the memoized bound needs.
    """
    centred = stats.shift(params.means)
    factor = params.factor
    if factor.ndim == 3:
        precision = np.einsum("kij,klj->kil", factor, factor)
        quad = np.einsum("kij,kij->k", precision, centred.s2)
    else:
        quad = np.einsum("kd,kd->k", factor ** 2, centred.s2)
    return float(centred.nk @ params.c - 0.5 * quad.sum())


class ChunkLoop:
    """Runs one initialised fit to the end, chunk by chunk.

    Parameters
    ----------
    model : BaseMixture
        Provides ``_kernel_params``, ``_m_step``, ``_kl``, ``_get_parameters`` and
        ``_set_parameters``.
    source : ChunkSource
    sample_weight : (n_rows,) or None
    max_passes, tol : stopping rule (passes over the data; change of the bound per row)
    learning_offset, learning_decay : tau and kappa of the stochastic step size
    shuffle : visit chunks in a random order each pass (stochastic, memoized)
    validation : ChunkSource or None; its mean log-normaliser is recorded every pass and
        decides convergence of the stochastic algorithm
    callback : called with a dict after every chunk ("chunk") and pass ("pass")
    checkpoint : called with the state between chunks; it decides when to write
    total_weight : the N of the stochastic step (default: the weight of ``source``;
        ``partial_fit`` passes the expected size of the whole stream)
    backend : Backend or name (default "local"): computes the chunk statistics
    moves : tuple of str, the moves of a batch or memoized fit (of 'merge', 'birth',
        'delete'; from a memoized fit's second pass on).  'merge': every pass also
        collects each chunk's entropy losses for the candidate pairs the model names
        (``_merge_candidates``), and at its end the model picks the merges that raise the
        exact ELBO (``_greedy_merges``); the loop applies them to the pass's statistics
        (and a memoized fit's chunk caches, so its bound stays exact).  'birth' and
        'delete': at the start of a pass (not right after a pass with a proposal), the
        model may make a proposal (``_propose``: kernel parameters with components split
        or one removed, from targets it has not tried since the components last
        changed) under which the pass computes every chunk's statistics too; at its end
        the proposal replaces the fit's statistics and caches if its exact ELBO is higher
        (then the pass makes no merges).  The pass's record lists the moves tried under
        ``"moves"``; a fit with births or deletes converges only once each kind has
        tried every target on the current components.
    """

    def __init__(self, model, source, sample_weight, max_passes, tol, learning_offset=10.0,
                 learning_decay=0.7, shuffle=True, validation=None, callback=None,
                 checkpoint=None, total_weight=None, backend="local", moves=()):
        self.model = model
        moves = tuple(moves or ())
        self.merging = "merge" in moves
        self.proposing = tuple(kind for kind in ("birth", "delete") if kind in moves)
        self.backend = get_backend(backend)
        self.source = source
        self.sample_weight = sample_weight
        self.max_passes = max_passes
        self.tol = tol
        self.tau = learning_offset
        self.kappa = learning_decay
        self.shuffle = shuffle
        self.validation = validation
        self.callback = callback
        self.checkpoint = checkpoint
        self.bounds = source.chunk_bounds()
        self.n_chunks = len(self.bounds)
        self.truncation = model._truncation()
        if total_weight is None:
            total_weight = (float(source.n_rows) if sample_weight is None
                            else float(sample_weight.sum()))
        self.total_weight = float(total_weight)
        self._tree = None       # memoized: the ChunkTree of state.memo (rebuilt each pass)

    # ------------------------------------------------------------------ helpers
    def _search(self, state):
        """The truncated search of the chunks from ``state.position`` on, or None."""
        if self.truncation is None:
            return None
        # the step count varies the random candidates from chunk to chunk and pass to pass
        return Search(self.truncation, state.supports, state.neighbours,
                      state.search_seed + state.step)

    def _new_order(self, state):
        return steps.pass_order(state.algorithm, self.shuffle, state.rng, state.step_chunks,
                                self.n_chunks)

    def _emit(self, event):
        if self.callback is not None:
            self.callback(event)

    # ------------------------------------------------------------------ the loop
    def run(self, state):
        # Ctrl-C (or a command's SIGTERM) stops the fit between two chunks, where the
        # state is whole and a checkpoint is written first (fastvi.data.interrupts)
        with interrupts.deferred() as interrupted:
            return self._run(state, interrupted)

    def _run(self, state, interrupted):
        model = self.model
        model._set_parameters(state.params)
        started = time.perf_counter()
        while state.n_pass < self.max_passes and not state.converged:
            if state.order is None:
                state.order = self._new_order(state)
                state.position = 0
            if state.algorithm == "batch" and state.position > 0 and state.stats is not None \
                    and not state.partials and state.position < self.n_chunks:
                # checkpointed mid-pass by a fastvi that summed left to right: its sum so
                # far is one block of the pairwise sum
                state.partials, state.stats = [[0, state.position, state.stats]], None
            if state.algorithm == "memoized":
                self._tree = ChunkTree(self.n_groups(state), state.memo)
            pass_params = model._kernel_params()
            if self.truncation is not None and (state.position == 0 or state.neighbours is None):
                # Fixed for the pass (a search heuristic: stale lists cost speed, not
                # correctness) and kept in the state, so a resumed pass searches alike.
                state.neighbours = self.backend.neighbour_lists(pass_params, self.truncation)
            if self.merging and state.algorithm != "stochastic" and state.position == 0:
                # a memoized fit's first pass only fills its caches: merges from the second
                first = state.algorithm == "memoized" and state.n_pass == 0
                state.merge_pairs = None if first else model._merge_candidates()
                state.memo_pair_loss = {}
            if self.proposing and state.position == 0:
                state.proposal = self._new_proposal(state)
                state.memo_proposal, state.memo_proposal_entropy = {}, {}
            extra = {}       # only a fit with moves asks the backend for more than stats
            if state.merge_pairs is not None:
                extra["pairs"] = state.merge_pairs
            if state.proposal is not None:
                extra["proposal"] = state.proposal["params"]
            indices = state.order[state.position:]
            with self.backend.open_pass(self.source, indices, self.sample_weight,
                                        self._search(state), **extra) as chunk_pass:
                for params, runs in self._requests(state, chunk_pass, pass_params):
                    for (first, lo, hi), value in zip(runs, chunk_pass.sums(
                            params, [hi - lo for _, lo, hi in runs])):
                        self._take_run(state, first, lo, hi, value, params)
                        self._emit({"event": "chunk", "pass": state.n_pass,
                                    "step": state.step,
                                    "rows": self._rows(state.order[first + lo:first + hi]),
                                    "position": state.position,
                                    "n_chunks": len(state.order),
                                    "seconds": time.perf_counter() - started})
                        if self.checkpoint is not None:
                            with interrupts.held():
                                self.checkpoint(state, force=interrupted())
                        if interrupted():
                            raise FitInterrupted(state, getattr(self.checkpoint, "path",
                                                                None),
                                                 self.checkpoint is not None)
            self._end_pass(state)
            if self.checkpoint is not None:
                with interrupts.held():
                    self.checkpoint(state, force=True)
        return state

    # ------------------------------------------------------------------ steps
    def n_groups(self, state):
        """The memoized fit's batches (a batch pass's one), each one cache."""
        return steps.n_groups(state.algorithm, state.step_chunks, self.n_chunks)

    def _step_at(self, state, position):
        """``(first, stop, key)`` of the step at ``position`` (``steps.step_at``)."""
        return steps.step_at(state.algorithm, state.order, position, state.step_chunks,
                             self.n_chunks)

    def _requests(self, state, chunk_pass, pass_params):
        """The pass's requests from ``state.position`` on: ``(params, runs)``, each run
        ``(first, lo, hi)``, the leaves ``[lo, hi)`` of the step at positions ``first``...
        in the tree of that step, a node (``reduce.aligned_runs``), as large as the
        backend adds on its own.  The rest of a pass under the pass's parameters at once
        (batch, and a memoized fit's first pass); else one step at a time, under the
        parameters of the moment."""
        whole = (state.algorithm == "batch"
                 or (state.algorithm == "memoized" and state.n_pass == 0))
        while state.position < len(state.order):
            runs, position = [], state.position
            while position < len(state.order) and (whole or not runs):
                first, stop, _ = self._step_at(state, position)
                for lo, hi in aligned_runs(position - first, stop - first,
                                           chunk_pass.largest_run(stop - position)):
                    runs.append((first, lo, hi))
                position = stop
            yield (pass_params if whole else self.model._kernel_params()), runs

    def _rows(self, indices):
        return sum(self.bounds[index][1] - self.bounds[index][0] for index in indices)

    def _take_run(self, state, first, lo, hi, value, params):
        """Take in the sum ``value`` of the step's leaves ``[lo, hi)`` (positions
        ``first + lo``...), computed under ``params``; at the step's last, the step."""
        partial = PairwiseSum(state.partials if lo > 0 else [])
        partial.add_block(lo, hi, value)
        state.partials = partial.blocks
        state.position = first + hi
        state.step += hi - lo
        _, stop, key = self._step_at(state, first)
        if state.position == stop:
            state.partials = []
            self._take_step(state, first, key, partial.total(), params)
            state.params = self.model._get_parameters()

    def _take_step(self, state, first, key, new, params):
        """Take in the statistics ``new`` of a whole step (positions ``first``...; a memoized
        batch ``key``), computed under ``params``."""
        model = self.model
        cache = 0 if state.algorithm == "batch" else key
        if new.pair_loss is not None:       # merge moves (batch and memoized passes)
            state.memo_pair_loss[cache] = new.pair_loss
            new.pair_loss = None
        if new.proposal is not None:        # birth or delete (batch and memoized passes)
            proposed, new.proposal = new.proposal, None
            state.memo_proposal[cache] = proposed
            state.memo_proposal_entropy[cache] = (
                proposed.log_norm - expected_log_rho_sum(proposed, state.proposal["params"]))
        if state.algorithm == "batch":
            # the pass's tree sum, under the pass's parameters; the update at its end
            state.stats = new
            return
        if state.algorithm == "stochastic":
            if new.weight == 0.0:
                # A minibatch whose rows all weigh zero says nothing about the data: its
                # scaled statistics (N / |B|) S_B are undefined, so it makes no step.
                return
            t = steps.minibatches_before(state.n_pass, state.step, state.position, first,
                                         state.step_chunks, self.n_chunks)
            rho = (t + 1 + self.tau) ** (-self.kappa)
            scaled = new.scale(rho * self.total_weight / new.weight)
            state.stats = scaled + state.stats.scale(1.0 - rho)
            model._m_step(state.stats)
            # The pass's bound estimate: the minibatches' mean log-normaliser per row, and
            # the KL once at the end of the pass (per step it cost ~2 ms of ~20 ms).
            state.pass_bound_sum += new.log_norm / new.weight
            state.pass_bound_count += 1
            return
        # memoized: S is the tree sum of the batches' caches, recomputed above the replaced
        state.memo[key] = new
        state.memo_entropy[key] = new.log_norm - expected_log_rho_sum(new, params)
        state.stats = self._tree.set(key, new)
        if state.n_pass == 0 and len(state.memo) < self.n_groups(state):
            return      # the first pass updates once, when every batch is cached
        model._m_step(state.stats)

    def _entropy(self, state):
        """H[q(z)] of the pass's q(z): a memoized fit's cached terms; a batch pass's q(z) is
        the optimum under the pass's parameters (still the model's), whose entropy is the
        log-normaliser minus the expected log rho."""
        if state.algorithm == "memoized":
            return tree_sum(state.memo_entropy, self.n_groups(state))
        return (state.stats.log_norm
                - expected_log_rho_sum(state.stats, self.model._kernel_params()))

    def _new_proposal(self, state):
        """The pass's birth or delete proposal, or None (a memoized fit's first pass, the
        pass after one with a proposal, or nothing to propose)."""
        if state.algorithm == "memoized" and state.n_pass == 0:
            return None
        if state.proposal_wait > 0:
            state.proposal_wait -= 1
            return None
        kinds = self.proposing[state.next_move:] + self.proposing[:state.next_move]
        state.next_move = (state.next_move + 1) % len(self.proposing)
        for kind in kinds:
            tried = state.tried.setdefault(kind, [])
            before = len(tried)
            proposal = self.model._propose(kind, self.source, self.sample_weight,
                                           self.total_weight, state.rng, tried)
            if proposal is not None:
                state.proposal_wait = 1         # a pass with a proposal costs two
                return proposal
            if len(tried) == before and kind not in state.moves_settled:
                state.moves_settled.append(kind)      # every target has had its turn
        return None

    def _settle(self, state):
        """The pass's birth or delete proposal, judged: accepted (its statistics, entropy and
        a memoized fit's caches replace the fit's) if its exact ELBO is the higher.
        Returns its record, in a list (empty without a proposal)."""
        proposal, caches = state.proposal, state.memo_proposal
        entropies = state.memo_proposal_entropy
        state.proposal, state.memo_proposal, state.memo_proposal_entropy = None, {}, {}
        n_groups = self.n_groups(state)
        if proposal is None or len(caches) < n_groups:
            return []
        proposed = tree_sum(caches, n_groups)
        proposed_entropy = tree_sum(entropies, n_groups)
        before = self.model._bound(state.stats, self._entropy(state))
        gain = self.model._bound(proposed, proposed_entropy) - before
        record = {key: value for key, value in proposal.items() if key != "params"}
        record.update(gain=float(gain), accepted=bool(gain > 0.0))
        if record["accepted"]:
            state.stats = proposed
            if state.algorithm == "memoized":
                state.memo, state.memo_entropy = caches, entropies
                self.model._m_step(state.stats)
        return [record]

    def _moves(self, state):
        """Every move of the pass's end, in order (the proposal's, then merges unless the
        proposal was accepted: the pairs' losses were of the old q(z)); their records."""
        records = self._settle(state) if self.proposing else []
        if self.merging:
            if any(record["accepted"] for record in records):
                state.merge_pairs, state.memo_pair_loss = None, {}
            else:
                records += self._merge(state)
        if any(record["accepted"] for record in records):
            state.moves_settled, state.tried = [], {}     # new components: all to try again
        return records

    def _merge(self, state):
        """The merge moves at the end of a pass (none after a memoized fit's first, or
        when the pass did not see every chunk's pair losses); returns their records.

        Batch: the merges change the pass's statistics, which the M-step then takes.
        Memoized: every chunk's cache is merged too.
        """
        pairs = state.merge_pairs
        losses = state.memo_pair_loss
        state.merge_pairs, state.memo_pair_loss = None, {}
        if pairs is None or len(losses) < self.n_groups(state):
            return []
        memoized = state.algorithm == "memoized"
        entropy = self._entropy(state)
        loss = tree_sum(losses, self.n_groups(state))
        moves, _ = self.model._greedy_merges(state.stats, entropy, pairs, loss)
        accepted = [move for move in moves if move["accepted"]]
        for move in accepted:
            (j, k), p = move["components"], move["pair"]
            state.stats = state.stats.merged(j, k)
            if memoized:
                for index in state.memo:
                    state.memo[index] = state.memo[index].merged(j, k)
                    state.memo_entropy[index] -= losses[index][p]
        if accepted and memoized:
            self.model._m_step(state.stats)
        return moves

    def _end_pass(self, state):
        model = self.model
        moves = None
        if state.algorithm == "batch":
            if state.partials:        # a checkpoint of an older fastvi, at the pass's end
                state.stats = PairwiseSum(state.partials).total()
            state.partials = []
            # A no-op on sums of the backends' mirrored chunk statistics; a batch state
            # checkpointed mid-pass by fastvi before the backend seam (tests/data/legacy)
            # holds the upper triangle of its chunks so far, and is completed here.
            state.stats.mirror_upper()
            bound = (state.stats.log_norm - model._kl()) / state.stats.weight
            if self.merging or self.proposing:
                moves = self._moves(state)
            model._m_step(state.stats)
            state.stats = None
        elif state.algorithm == "stochastic":
            bound = (state.pass_bound_sum / max(state.pass_bound_count, 1)
                     - model._kl() / self.total_weight)
            state.pass_bound_sum = 0.0
            state.pass_bound_count = 0
        else:
            moves = self._moves(state) if self.merging or self.proposing else None
            # The ELBO of the cached q(z) and the current q(theta): exact, no extra pass.
            params = model._kernel_params()
            bound = (self._entropy(state) + expected_log_rho_sum(state.stats, params)
                     - model._kl()) / self.total_weight
        record = {"event": "pass", "pass": state.n_pass + 1, "step": state.step,
                  "bound": bound}
        merged = False
        if moves is not None:
            record["moves"] = moves
            merged = any(move["accepted"] for move in moves)
        decider = bound
        if self.validation is not None:
            record["validation"] = model._mean_log_norm(self.validation)
            if state.algorithm == "stochastic":
                decider = record["validation"]
        # Memoized: the first pass only fills the cache; its bound is not comparable.
        # A pass that moved components changed the model: not a sign of convergence.
        # Births and deletes: not before each kind has had its say on these components.
        comparable = (not (state.algorithm == "memoized" and state.n_pass == 0) and not merged
                      and all(kind in state.moves_settled for kind in self.proposing))
        if comparable and abs(decider - state.decider) < self.tol:
            state.converged = True
        state.params = model._get_parameters()
        state.n_pass += 1
        state.order = None
        state.position = 0
        state.bound = bound
        state.decider = decider
        state.history.append(record)
        self._emit(record)
