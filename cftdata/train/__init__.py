"""The optional trainer extra (``pip install 'cftdata[train]'``): fine-tune on a CFT dataset, evaluate, pick.

Reproduces the validation fine-tune of the CFT paper (arXiv 2501.17703, sections 4 and 5) with TRL's
``SFTTrainer``: see ``docs/training.md``.

* :mod:`cftdata.train.config` - named training configurations (``reference-8xh100``, ``cpu-smoke``).
* :mod:`cftdata.train.data` - reading cftdata outputs, chat templates, the label mask, truncation.
* :mod:`cftdata.train.trainer` - :func:`~cftdata.train.trainer.run_training`.
* :mod:`cftdata.train.launch` - the ``accelerate launch`` command for N GPUs on M nodes.
* :mod:`cftdata.train.evaluate` - the paper's math evaluation; generations go through the model layer
  (:mod:`cftdata.backends`: vLLM, transformers, llama.cpp...), cached and resumable.
* :mod:`cftdata.train.checkpoints` - checkpoint selection on MATH-500.
* :mod:`cftdata.train.commands` - the click commands ``train``, ``eval``, ``select-checkpoint``.
* :mod:`cftdata.train.tiny` - tiny random models built locally, for smoke runs and tests.

Importing this package imports nothing heavy; torch, transformers and TRL load when a command runs.
The data pipeline never imports it.
"""

from __future__ import annotations

__all__: list[str] = []
