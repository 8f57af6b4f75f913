"""The memory of a mixture fit or prediction, checked before anything is allocated.

Every large array of a fit has its size set by one parameter (or by the data's shape with
it): the components' statistics by ``n_components`` and ``covariance_type``, the chunks
by ``chunk_size`` or ``batch_size``, the initialisation sample by ``init_sample_size``,
the per-row supports by ``n_active``.  ``check_fit`` compares each with this machine's
memory (``fastvi.data.memory.check_memory``) and refuses the first that cannot fit in one
sentence naming the parameter and its command-line option, instead of a MemoryError (or
the OS's out-of-memory killer) deep in the work.

The counts follow what the code allocates; a few small arrays are left out, so a need is
a lower bound of the fit's memory, never more than it takes.  Sizes that only bound the
work from above are clamped, not refused: a chunk is at most the data's rows
(``ChunkSource.max_chunk_rows``), whatever ``chunk_size`` says.
"""
import numba

from ..data.memory import array_bytes, check_memory, shape_text
from . import init as _init
from .gaussian import is_full

# Besides the E-step kernels' GROUP_BLOCKS sums of the statistics (one per block of rows,
# added in block order, for results that do not depend on the thread count), the fit
# holds a few more copies: the running and the chunk statistics and their sum, the
# kernel's padded precision factors, the parameters, the best initialisation's.  A
# full-covariance fit measured 40 arrays of K x D x D at its peak (ru_maxrss, K = 4..8,
# D = 500..700, GROUP_BLOCKS = 32).
OWN_COPIES = 8

# The command-line options of the parameters that size a fit (``fastvi fit``), so that an
# error names both: the estimator's parameter for Python, the option for the command.
OPTIONS = {"n_components": "--k", "covariance_type": "--cov", "chunk_size": "--chunk-size",
           "batch_size": "--batch-size", "init_params": "--init", "n_active": "--n-active"}


def named(model, name):
    """``"n_components (--k) 40"``: a parameter of ``model``, its option and its value."""
    option = OPTIONS.get(name)
    return f"{name}{f' ({option})' if option else ''} {getattr(model, name)!r}"


def _per_thread(threads):
    """``"2 threads"``, ``"1 thread"``."""
    return f"{threads} thread{'s' * (threads != 1)}"


def _threads(model):
    """The compute threads of a call (each holds its own work arrays)."""
    if model.n_jobs is None:
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS if model.n_jobs == -1 else int(model.n_jobs)


def _kernel_blocks():
    """(rows of an E-step block, block sums the E-step keeps) of the kernels.

    Imported here, not at the top: the mixture layer reaches the kernels through the
    engine (tests/test_layers.py); the numbers are the kernels' own.
    """
    from ..kernels import BLOCK_ROWS, GROUP_BLOCKS
    return BLOCK_ROWS, GROUP_BLOCKS


def _statistics_needs(model, n_features):
    """The components' statistics: K x D x D second moments (full and tied) or K x D
    first and second moments (diag, spherical), ``GROUP_BLOCKS + OWN_COPIES`` of them."""
    n_components, full = model.n_components, is_full(model.covariance_type)
    group_blocks = _kernel_blocks()[1]
    copies = (group_blocks + OWN_COPIES) * (1 if full else 2)
    how = f"the E-step's {group_blocks} block sums and the fit's own copies"
    on = f"{named(model, 'covariance_type')} on {n_features} features"
    if full:
        # one component already too large: the covariance type (or the data) is the cause
        one = (n_features, n_features)
        yield (copies * array_bytes(one), on,
               f"one component's second moments ({copies} arrays of {shape_text(one)}: "
               f"{how})")
    shape = (n_components, n_features, n_features) if full else (n_components, n_features)
    yield (copies * array_bytes(shape), f"{named(model, 'n_components')} with {on}",
           f"the components' statistics ({copies} arrays of {shape_text(shape)}: {how})")


def _work_needs(model, threads):
    """The E-step kernel's two (K, rows of a block) arrays per thread."""
    shape = (model.n_components, _kernel_blocks()[0])
    yield (threads * 2 * array_bytes(shape), named(model, "n_components"),
           f"the E-step's work arrays ({_per_thread(threads)} x 2 x {shape_text(shape)})")


def _chunk_needs(model, source):
    """The chunks read at once, and a chunk's responsibilities where moves need them."""
    online = model.algorithm != "batch" and model.batch_size is not None
    rows = source.max_chunk_rows
    n_bytes = source.buffer_bytes()
    chunk = shape_text((rows, source.n_features), source.dtype)
    purpose = f"the chunks in memory at once (up to 3 of {chunk})"
    if model._moves():
        resp = (rows, model.n_components)
        n_bytes += array_bytes(resp)
        purpose += f" and a chunk's responsibilities ({shape_text(resp)})"
    yield n_bytes, named(model, "batch_size" if online else "chunk_size"), purpose


def _init_needs(model, source, threads):
    """The initialisation sample, and the random method's blocks of outer products."""
    sample = (min(model.init_sample_size, source.n_rows), source.n_features)
    yield (2 * array_bytes(sample), named(model, "init_sample_size"),
           f"the initialisation sample (2 x {shape_text(sample)})")
    if model.init_params == "random" and is_full(model.covariance_type):
        rows = min(_init.BLOCK_ROWS, sample[0])
        block = (rows + model.n_components, source.n_features ** 2)
        yield (threads * array_bytes(block),
               f"{named(model, 'init_params')} with {named(model, 'covariance_type')}",
               f"the blocks of the rows' outer products that it alone makes "
               f"({_per_thread(threads)} x {shape_text(block)})")


def _support_needs(model, source):
    """The per-row supports of a truncated fit, when they are kept in memory."""
    truncation = model._truncation()
    if truncation is None or truncation.exhaustive or model.support_file is not None:
        return
    shape = (source.n_rows, truncation.n_active)
    yield (array_bytes(shape, "int32"), named(model, "n_active"),
           f"the rows' supports in memory ({shape_text(shape, 'int32')}; support_file "
           "(--support-file) keeps them in a file instead)")


def check_fit(model, source, supports=True):
    """Refuse a fit of ``model`` on ``source`` whose arrays cannot fit in memory.

    Parameters
    ----------
    model : BaseMixture
        Its parameters checked (``_check_parameters``).
    source : ChunkSource
        The rows, validated: their shape, dtype and chunking.
    supports : bool, default=True
        Whether the fit keeps per-row supports (``partial_fit`` keeps none).

    Raises
    ------
    SizeError
        For the first need beyond this machine's memory, naming its parameter.
    """
    threads = _threads(model)
    needs = [*_statistics_needs(model, source.n_features), *_work_needs(model, threads),
             *_chunk_needs(model, source), *_init_needs(model, source, threads)]
    if supports:
        needs += _support_needs(model, source)
    for n_bytes, what, purpose in needs:
        check_memory(n_bytes, what, purpose)


def output_shapes(n_rows, n_components, log_norm=False, resp=False, labels=False, top=0):
    """[(shape, dtype)] of the per-row outputs of ``Backend.per_row`` for ``n_rows`` rows."""
    shapes = []
    if log_norm:
        shapes.append(((n_rows,), "float64"))
    if resp:
        shapes.append(((n_rows, n_components), "float64"))
    if labels:
        shapes.append(((n_rows, int(labels)), "int64"))
    if top:
        shapes += [((n_rows, int(top)), "int32"), ((n_rows, int(top)), "float64")]
    return shapes


def check_outputs(n_rows, n_components, what, extra=0, **outputs):
    """Refuse per-row outputs (``output_shapes``) of ``n_rows`` rows that cannot fit in
    memory, with ``extra`` bytes more (the caller's own buffers); ``what`` names the
    size's cause (``"data.h5:/X (1000000000 rows)"``, ``"chunk_rows (--chunk-size) 1000"``).
    """
    shapes = output_shapes(n_rows, n_components, **outputs)
    if not shapes:
        return
    n_bytes = extra + sum(array_bytes(shape, dtype) for shape, dtype in shapes)
    listed = ", ".join(shape_text(shape, dtype) for shape, dtype in shapes)
    check_memory(n_bytes, what, f"the per-row outputs ({listed})")
