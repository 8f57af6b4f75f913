"""What the estimators tell ``fastvi.io`` about themselves: the classes a checkpoint may
hold, the class behind each model file's ``class`` attribute, and the checks of a resumed
fit's state.

``fastvi.io`` knows HDF5 files, their formats and the JSON trees of checkpoints; it
imports no estimator.  The estimators' packages fill this registry when they are imported
(``fastvi.mixture.persistence``, ``fastvi.amortized.persistence``), so persistence has
one direction: the estimators import ``fastvi.io``, never the reverse.

Reading a file must find those entries even if nothing imported the estimators yet
(``fastvi.io.load("m.h5")`` in a fresh interpreter).  The package ``fastvi`` (above every
layer) installs a *provider* here (``add_provider``): a function that imports the
estimators' packages.  A lookup calls the providers once before it answers, so this
module never names a module above it.

The registry stays a fixed allow-list: only fastvi's own modules register, when they are
imported, and a lookup never imports a module or calls a constructor that a file names;
an unknown name is the reader's error.
"""
# "module.qualname" -> class, for the JSON trees of checkpoints (``fastvi.io.tree``)
_STATE_CLASSES = {}
# format -> {class name -> ModelEntry}, for model files (``fastvi.io.model``, ``.amortized``)
_MODELS = {}
# estimator class -> the check of a resumed state (``fastvi.io.resume_checks``)
_RESUME_CHECKS = {}

_PROVIDERS = []
_provided = False


class ModelEntry:
    """A model class registered for a model-file format, with the hooks the format's reader
    calls (which ones, and with what, is the format module's contract)."""

    def __init__(self, cls, hooks):
        self.cls = cls
        self.hooks = dict(hooks)

    def __repr__(self):
        return f"ModelEntry({self.cls.__qualname__}, hooks={sorted(self.hooks)})"


def add_provider(provider):
    """Call ``provider()`` (once) before the first lookup that needs every entry.

    Parameters
    ----------
    provider : callable
        Imports the modules that register (``fastvi`` gives one that imports
        ``fastvi.mixture`` and ``fastvi.amortized``).
    """
    global _provided
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)
        _provided = False


def _provide():
    """Run the providers not yet run, so that every fastvi module that registers has."""
    global _provided
    # No lock: the providers import modules, and Python's import locks already make a
    # second thread wait for a module another thread is importing (a lock of ours held
    # across an import could deadlock with a thread that imports an estimator directly).
    if not _provided:
        for provider in list(_PROVIDERS):
            provider()
        _provided = True


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


# ----------------------------------------------------------------------------- registering

def register_state_class(cls, former_module=None):
    """Allow instances of ``cls`` in checkpoints, under ``module.qualname`` (and, if given,
    under ``former_module.qualname``: where the class lived when older files were written).

    Returns ``cls``, so that it may decorate a class.
    """
    _STATE_CLASSES[_qualified_name(cls)] = cls
    if former_module is not None:
        _STATE_CLASSES[f"{former_module}.{cls.__qualname__}"] = cls
    return cls


def register_model(cls, format, **hooks):
    """Make ``cls`` the class of ``format`` model files whose ``class`` attribute is its
    name; ``hooks`` are what the format's reader calls (see the format's module)."""
    _MODELS.setdefault(format, {})[cls.__name__] = ModelEntry(cls, hooks)
    return cls


def register_resume_check(cls, check):
    """Make ``check(check, state, model, source)`` the check of a state that an estimator
    of ``cls`` (or of a subclass) resumes (``fastvi.io.resume_checks.validate_state``)."""
    _RESUME_CHECKS[cls] = check
    return cls


# ----------------------------------------------------------------------------- looking up

def state_classes():
    """The classes a checkpoint may hold, by ``module.qualname`` (and former name)."""
    _provide()
    return _STATE_CLASSES


def model_entries(format):
    """The registered classes of ``format`` model files: {class name: ModelEntry}."""
    _provide()
    return _MODELS.get(format, {})


def model_entry(model):
    """The (format, ModelEntry) under which the class of ``model`` is registered, or
    (None, None).  The providers run only if the class is not found: a class may be
    imported from its own module before its package's ``persistence`` registered it
    (``fastvi.amortized`` imports that on first use)."""
    cls = type(model)
    for attempt in range(2):
        for format, entries in _MODELS.items():
            entry = entries.get(cls.__name__)
            if entry is not None and entry.cls is cls:
                return format, entry
        if attempt == 0:
            _provide()
    return None, None


def resume_check(model):
    """The check registered for the class of ``model`` or its nearest base, or None."""
    for cls in type(model).__mro__:
        if cls in _RESUME_CHECKS:
            return _RESUME_CHECKS[cls]
    _provide()
    for cls in type(model).__mro__:
        if cls in _RESUME_CHECKS:
            return _RESUME_CHECKS[cls]
    return None
