"""Fine-tuning BiomedCLIP's image tower with a burn-depth head (``burnscope finetune``).

One job per module:

* ``data``        labelled folder or CSV → samples with patient/study groups; checks; split by group
* ``augment``     the mild, seeded augmentations a dermatology photograph tolerates
* ``network``     the classifier (image tower + linear head) and which blocks train
* ``distributed`` process launch (``--nproc``, ``torchrun``), gloo/NCCL set-up, rank helpers
* ``checkpoint``  per-epoch checkpoints, hash-checked, written atomically
* ``trainer``     the training loop (DDP, mixed precision, early stopping, sync checks)
* ``report``      metrics report with confidence intervals, plots and the model card
* ``finetune``    the whole run: checks → training workers → model folder + report
"""
