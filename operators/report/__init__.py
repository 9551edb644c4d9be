"""Report emitter: per-image JSON, text, PDF, DICOM SR / Encapsulated PDF and FHIR reports.

Modules: ``core`` (report dict, JSON/text, :class:`~.core.ReportEmitter`, :class:`~.core.ReportBundle`),
``standards`` (registers the ``sr``, ``pdf``, ``pdf_dcm``, ``fhir`` renderers), ``dicom``, ``pdf``,
``fhir``, ``codes`` (coded concepts), ``examples`` (an example decision), ``operator``
(:class:`~.operator.ReportEmitterOp`).
"""
