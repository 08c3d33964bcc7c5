"""The evaluation of the index on a synthetic population with its ground truth: the seeded
generator (:mod:`adapters.evaluation.population`, with its tables in
:mod:`adapters.evaluation.tables`) and the replay through the real feed that `mpi evaluate`
runs (:mod:`adapters.evaluation.replay`)."""

from adapters.evaluation.replay import EvaluationReport, evaluate

__all__ = ["EvaluationReport", "evaluate"]
