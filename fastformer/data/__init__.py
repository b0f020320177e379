"""Data loading for every task, in each dataset's original distribution format.

* :mod:`~fastformer.data.classification` -- ``load_classification(cfg.data)``: Amazon / IMDB / MIND topics / any
  jsonl-csv table -> seeded, cached splits of token ids (formats in ``classification_formats``, per-dataset paths and
  URLs in ``classification_sources``).
* :mod:`~fastformer.data.text` -- word tokeniser, ``Vocab`` (pad 0, unk 1), optional GloVe initialisation.
* :mod:`~fastformer.data.download` -- ``ensure_file``: fetch + verify an official file, or fail offline in one line.
* :mod:`~fastformer.data.fixtures` -- tiny fixture datasets in the original formats, for tests.

Submodules are not imported here, so ``import fastformer.data.<x>`` stays cheap.
"""
