"""Token mixers: ``build_mixer(name, d_model=..., n_heads=..., **kw)`` and the ``MIXERS`` registry.

Importing this package registers every mixer in the repository.
"""
from fastformer.mixers.base import MIXERS, TokenMixer, build_mixer, mixer_kwargs, register_mixer

# Each import registers one mixer (one file per mixer).
from fastformer.mixers import fastformer as _fastformer  # noqa: F401,E402
from fastformer.mixers import transformer as _transformer  # noqa: F401,E402

for _optional in ("longformer", "bigbird", "linformer", "linear_transformer", "poolingformer", "performer"):
    try:  # mixers are added file by file; a missing file is simply not registered yet
        __import__(f"fastformer.mixers.{_optional}")
    except ModuleNotFoundError as _e:  # pragma: no cover
        if _e.name != f"fastformer.mixers.{_optional}":
            raise

__all__ = ["MIXERS", "TokenMixer", "build_mixer", "mixer_kwargs", "register_mixer"]
