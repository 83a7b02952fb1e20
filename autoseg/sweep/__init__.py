"""Many trainings at once: the launchers that run them and the benchmark sweeps built on them.

- :mod:`autoseg.sweep.jobs`: one training job (:class:`FoldJob`) and the summary table at the end;
- :mod:`autoseg.sweep.local`: the local launcher, a queue of ``autoseg train`` subprocesses;
- :mod:`autoseg.sweep.slurm`: the SLURM launcher (submitit), one job per (configuration, fold),
  requeued and resumed from ``checkpoint_latest.pt`` when SLURM stops it;
- :mod:`autoseg.sweep.spec`, :mod:`autoseg.sweep.run`, :mod:`autoseg.sweep.leaderboard`,
  :mod:`autoseg.sweep.manifest`: ``autoseg sweep SWEEP.yaml``.

Layer: below :mod:`autoseg.commands` (which composes the hydra config and calls in here), above
:mod:`autoseg.training` and :mod:`autoseg.evaluation`. Trainings run as ``autoseg`` processes, so
this package never composes a config itself.
"""
