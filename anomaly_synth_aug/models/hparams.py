"""What the adapters keep out of their Lightning hyperparameters.

anomalib stores only plain data in ``hparams`` (checkpoints load with ``weights_only``), so
live objects are ignored: its four components and our ``AnomalyGenerator``.
"""

NON_HPARAM_ARGS: list[str] = ["generator", "pre_processor", "post_processor", "evaluator", "visualizer"]
