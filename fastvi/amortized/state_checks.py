"""The checks of an amortized fit's checkpointed ``EpochState``
(``fastvi.io.resume_checks``): the epochs, the model's settings, its networks' layers and
their optimisers' moments.

Beside the estimators, not in ``fastvi.io``: the checks know the networks' classes, and
``fastvi.io`` imports no estimator.  ``fastvi.amortized.persistence`` registers
``check_resumed_state`` for ``validate_state``.
"""
import numpy as np

from ..io.resume_checks import _is_int, _same, _shown, _what


def check_resumed_state(check, state, model, source):
    """``validate_state`` of a state that a ``VAE`` (or ``PPCA``) resumes: an
    ``EpochState``."""
    from .vae import EpochState
    if type(state) is not EpochState:
        check.fail("state", f"is {_what(state)} (expected the EpochState of an amortized "
                   "fit)")
    _check_epoch_state(check, state, model)


def _check_epoch_state(check, state, model):
    """``validate_state`` of an amortized fit's ``EpochState``: the model is checked
    against its own settings (whether they fit the data is ``VAE.fit``'s question)."""
    from .nn import MLP
    from ..kernels.dense import ACTIVATIONS
    vae = getattr(state, "model", None)
    if type(vae) is not type(model):
        check.fail("model", f"is {_what(vae)} (expected a {type(model).__name__}, the model "
                   "this fit trains)")
    try:
        # AttributeError: a setting missing; TypeError: one its check cannot compare
        vae._check_parameters()
    except (ValueError, TypeError, AttributeError) as exc:
        check.fail("model", f"has an invalid setting: {exc}")
    # VAE.fit goes on with the checkpoint's model whole, its settings included: one that
    # differs from the resuming estimator's would be ignored without a word (and a
    # garbled max_epochs would train for ever).  Where it runs (n_jobs), what it prints
    # and the seed (its generator is the state's) may differ.
    ours = model.get_params(deep=False)
    for name, value in ours.items():
        if name in ("n_jobs", "verbose", "random_state"):
            continue
        if not hasattr(vae, name):
            check.fail("model", f"lacks the setting {name}")
        theirs = getattr(vae, name)
        if not _same(value, theirs):
            raise ValueError(
                f"{check.where}: the checkpoint is of a {type(vae).__name__} with {name}="
                f"{_shown(theirs)}, this fit's has {name}={_shown(value)}: resume with the "
                "settings of the checkpointed fit, or remove it to start afresh")
    if vae.activation not in ACTIVATIONS:
        check.fail("model.activation", f"is {_shown(vae.activation)} (expected one of "
                   f"{', '.join(ACTIVATIONS)})")
    hidden = {}
    for name in ("decoder_hidden", "encoder_hidden"):
        widths = getattr(vae, name, None)
        if type(widths) is not tuple or not all(_is_int(w) and w >= 1 for w in widths):
            check.fail(f"model.{name}", f"is {_shown(widths)} (expected a tuple of widths "
                       ">= 1)")
        hidden[name] = tuple(int(w) for w in widths)
    epochs = check.integer("epochs", getattr(state, "epochs", None), 0, vae.max_epochs,
                           expected=f"an integer in 0..{vae.max_epochs}, the epochs done")
    history = check.type("model.elbo_history_", getattr(vae, "elbo_history_", None), list,
                         "a list of one ELBO per epoch")
    if len(history) != epochs:
        check.fail("model.elbo_history_", f"has {len(history)} entries (expected {epochs}, "
                   "one per epoch done)")
    for i, value in enumerate(history):
        check.real(f"model.elbo_history_[{i}]", value)
    check.generator("rng", getattr(state, "rng", None))
    d = vae.n_latent
    n_features = check.integer("model.n_features_in_", getattr(vae, "n_features_in_", None), 1)
    dtype = np.dtype(vae.dtype)
    act = ACTIVATIONS[vae.activation]
    networks = [("decoder", (d, *hidden["decoder_hidden"], n_features))]
    if vae.inference == "per_example":
        if getattr(vae, "encoder_", None) is not None:
            check.fail("model.encoder_", f"is {_what(vae.encoder_)} (expected None: "
                       "per-example inference has no encoder)")
    else:
        networks.append(("encoder", (n_features, *hidden["encoder_hidden"], 2 * d)))
    for name, sizes in networks:
        field = f"model.{name}_"
        mlp = check.type(field, getattr(vae, f"{name}_", None), MLP,
                         f"an MLP {' -> '.join(map(str, sizes))}")
        _check_mlp(check, field, mlp, sizes, act, dtype)
        _check_adam(check, f"model._{name}_opt", getattr(vae, f"_{name}_opt", None),
                    mlp.params, f"the {name}'s")
    check.real("model.log_variance_", getattr(vae, "log_variance_", None))
    opt = getattr(vae, "_log_variance_opt", None)
    _check_adam(check, "model._log_variance_opt", opt, None, "the log-variance's")
    if vae.inference == "per_example":
        psi = getattr(vae, "psi_", None)
        n_rows = psi.shape[0] if type(psi) is np.ndarray and psi.ndim == 2 else 0
        what = f"(mu, log sigma) of each of {n_rows} rows"
        for name in ("psi_", "_psi_m", "_psi_v"):
            check.array(f"model.{name}", getattr(vae, name, None), (n_rows, 2 * d), what,
                        dtype=dtype)
        check.positive("model._psi_v", vae._psi_v, 0.0, "values >= 0", strict=False)
        count = check.array("model._psi_count", getattr(vae, "_psi_count", None), (n_rows,),
                            "a step count per row", kind="i", dtype=np.dtype(np.int64))
        check.indices("model._psi_count", count, 0, np.iinfo(np.int64).max, "counts >= 0")


def _check_mlp(check, field, mlp, sizes, activation, dtype):
    """An ``MLP`` of widths ``sizes``: its layers' weights, biases and gradients."""
    # (types first: an array would compare elementwise, a string with a dtype not at all)
    found = getattr(mlp, "sizes", None)
    if type(found) is not tuple or found != sizes:
        check.fail(f"{field}.sizes", f"is {_shown(found)} (expected {sizes})")
    found = getattr(mlp, "dtype", None)
    if not isinstance(found, np.dtype) or found != dtype:
        check.fail(f"{field}.dtype", f"is {_shown(found)} (expected {dtype}, the model's)")
    n_layers = len(sizes) - 1
    activations = [activation] * (n_layers - 1) + [0]      # the output layer is linear
    found = getattr(mlp, "activations", None)
    if type(found) is not list or found != activations:
        check.fail(f"{field}.activations", f"is {_shown(found)} (expected {activations})")
    for name in ("params", "grads"):
        arrays = check.type(f"{field}.{name}", getattr(mlp, name, None), list,
                            f"a list of {2 * n_layers} arrays")
        if len(arrays) != 2 * n_layers:
            check.fail(f"{field}.{name}", f"has {len(arrays)} arrays (expected "
                       f"{2 * n_layers}: a weight matrix and a bias per layer)")
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            # gradients are overwritten before they are read: their values do not matter
            check.array(f"{field}.{name}[{2 * layer}]", arrays[2 * layer], (n_in, n_out),
                        f"the weights of layer {layer}, {n_in} -> {n_out}", dtype=dtype,
                        finite=name == "params")
            check.array(f"{field}.{name}[{2 * layer + 1}]", arrays[2 * layer + 1], (n_out,),
                        f"the biases of layer {layer}", dtype=dtype, finite=name == "params")


def _check_adam(check, field, opt, params, whose):
    """An ``Adam`` over ``params`` (the network's own list), or over the log-variance's
    one value (``params`` None): moments of the parameters' shapes, steps counted."""
    from .nn import Adam
    check.type(field, opt, Adam, f"Adam over {whose} parameters")
    if params is None:
        # the log-variance: the fit hands it a fresh one-value list every step
        params = check.type(f"{field}.params", opt.params, list, "a list of one array")
        if len(params) != 1:
            check.fail(f"{field}.params", f"has {len(params)} arrays (expected 1)")
        check.array(f"{field}.params[0]", params[0], (1,), "the log-variance")
    elif opt.params is not params:
        check.fail(f"{field}.params", f"is not {whose} parameter list (expected that list "
                   "itself: the optimiser updates it in place)")
    for name in ("m", "v"):
        moments = check.type(f"{field}.{name}", getattr(opt, name, None), list,
                             f"a list of {len(params)} arrays")
        if len(moments) != len(params):
            check.fail(f"{field}.{name}", f"has {len(moments)} arrays (expected "
                       f"{len(params)}, one per parameter array)")
        for i, (moment, param) in enumerate(zip(moments, params)):
            check.array(f"{field}.{name}[{i}]", moment, param.shape,
                        f"the shape of {whose} parameter array {i}", dtype=param.dtype)
            if name == "v":
                check.positive(f"{field}.v[{i}]", moment, 0.0, "values >= 0", strict=False)
    check.integer(f"{field}.step_count", getattr(opt, "step_count", None), 0)
    check.real(f"{field}.learning_rate", getattr(opt, "learning_rate", None), 0.0,
               expected="a number > 0")
    for name in ("beta1", "beta2"):
        value = check.real(f"{field}.{name}", getattr(opt, name, None))
        if not 0.0 <= value < 1.0:
            check.fail(f"{field}.{name}", f"is {value!r} (expected a number in [0, 1))")
    check.real(f"{field}.eps", getattr(opt, "eps", None), 0.0, expected="a number > 0")
