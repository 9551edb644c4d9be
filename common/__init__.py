"""burnscope.common: what crosses package lines, owned by no operator or engine.

* :mod:`~burnscope.common.messages` — the typed messages that flow between operators
  (images, batches, findings, decisions, report bundles, error records).
* :mod:`~burnscope.common.vocabulary` — the burn-depth vocabulary: class keys, order, display
  names, the "needs review" outcome and their codes.
* :mod:`~burnscope.common.clinical` — typed decision-support results (fluid plan, referral).
* :mod:`~burnscope.common.gpu` — whether a GPU is usable, decided once.
* :mod:`~burnscope.common.tls` — every TLS context (DICOM TLS per PS3.15 BCP 195, HTTPS).
* :mod:`~burnscope.common.credentials` — secrets from files or environment variables, and
  their redaction from text and logs.
* :mod:`~burnscope.common.private_files` — 0600 files and 0700 folders for data at rest.

Layering (tests/unit/test_layering.py checks it): ``common`` imports nothing else of burnscope;
``engines`` imports ``common``; ``operators`` import ``common`` and ``engines``; ``lifecycle``
(fine-tuning, export) imports those three; ``applications`` and ``benchmarks`` sit on top.
"""
