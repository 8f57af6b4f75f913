"""How the amortized models are written and read: their entries in ``fastvi.io.registry``.

``fastvi.io`` knows the files (the ``fastvi-amortized`` format, the JSON trees of
checkpoints) and imports no estimator; this module, imported by ``fastvi.amortized``,
tells it which classes stand behind the names in those files:

* the classes a checkpoint may hold (the models, their epoch state, networks, optimisers
  and noise), under their module's name and the one older checkpoints use;
* the classes of the ``fastvi-amortized`` format, and the hook that makes a network of
  the layers read;
* the checks of a resumed fit's state (``state_checks``).

``MixtureEncoder`` is held by checkpoints but has no model file (``fastvi.io.save``
refuses it).
"""

from . import state_checks
from .encoder import MixtureEncoder
from .nn import MLP, Adam, RowNoise
from .ppca import PPCA
from .vae import VAE, EpochState
from ..io import registry
from ..io.amortized import FORMAT


def _network(sizes, activation, weights, biases):
    """An ``MLP`` of ``sizes`` holding the checked layers a model file stores (the same
    arrays, so a loaded model predicts bit for bit as the saved one)."""
    return MLP.from_layers(sizes, activation, weights, biases)


# Where the classes lived before the package was split by concern (fastvi 0.1.0,
# checkpoints written before issue 12): read under those names too.
for _cls, _former in ((EpochState, "fastvi.amortized"), (VAE, "fastvi.amortized"),
                      (PPCA, "fastvi.ppca"), (MLP, "fastvi._nn"), (Adam, "fastvi._nn"),
                      (RowNoise, "fastvi._nn"), (MixtureEncoder, "fastvi.mixture_encoder")):
    registry.register_state_class(_cls, former_module=_former)
for _cls in (VAE, PPCA):
    registry.register_model(_cls, FORMAT, network=_network)
registry.register_resume_check(VAE, state_checks.check_resumed_state)
