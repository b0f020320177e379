"""Token mixers: ``build_mixer(name, d_model=..., n_heads=..., **kw)`` and the ``MIXERS`` registry.

Importing this package registers every mixer in the repository (one file per mixer).
"""
from fastformer.mixers import (  # noqa: F401,E402  (each import registers one mixer)
    bigbird,
    fastformer,
    linear_transformer,
    linformer,
    longformer,
    performer,
    pooling_baseline,
    poolingformer,
    transformer,
)
from fastformer.mixers.base import (  # noqa: E402
    MIXERS,
    TokenMixer,
    build_mixer,
    causal_mixers,
    implementation_report,
    mixer_kwargs,
    register_mixer,
)

__all__ = ["MIXERS", "TokenMixer", "build_mixer", "causal_mixers", "implementation_report", "mixer_kwargs",
           "register_mixer"]
