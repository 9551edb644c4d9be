"""Report emitter: per-image JSON, text, PDF, DICOM SR / Encapsulated PDF and FHIR reports.

Modules: ``core`` (report dict, JSON/text, :class:`~.core.ReportEmitter`; ``ReportBundle`` is in
``burnscope.common.messages``),
``standards`` (registers the ``sr``, ``pdf``, ``pdf_dcm``, ``fhir`` renderers), ``dicom``, ``pdf``,
``fhir``, ``codes`` (coded concepts), ``operator``
(:class:`~.operator.ReportEmitterOp`).
"""
