"""The engine: passes over the chunks of a data set, and the backends that do the work.

* ``loop``: the chunk loop (batch, stochastic, memoized; the fit state that checkpoints
  hold and fits resume from), which asks a backend for chunk statistics and feeds the
  model's map from statistics to parameters;
* ``backend``: the contract between the loop and the backends (``Backend``), the kernel
  parameters they take (``KernelParams``) and ``get_backend``;
* ``local``: the backend of one machine (Numba threads over the fused kernels, the
  prefetching reader, the truncated search);
* ``cuda``: the CUDA backend (the kernels of ``fastvi.kernels.cuda`` on an NVIDIA GPU,
  ``backend="cuda"``; imports numba-cuda only when used) and ``backend="auto"``;
* ``cluster``: the Dask backend (the same kernels as tasks on a dask.distributed
  cluster; imports dask only when used);
* ``stats``: the additive sufficient statistics a backend returns;
* ``truncation``: the settings and per-row supports of the truncated q(z).

Imports: ``fastvi.data`` and ``fastvi.kernels`` only (and ``distributed`` and
``numba.cuda``, lazily).  Nothing here knows a model: the
loop calls the model's hooks (``_kernel_params``, ``_m_step``, ``_kl``, ...).
"""
