"""Sinks: report folder and error records, and network delivery through a durable outbox.

Modules: ``folder`` (:class:`~.folder.FolderSink`, :class:`~.folder.ErrorSink`), ``outbox``
(:class:`~.outbox.Outbox`), ``network`` (C-STORE, STOW-RS, FHIR transports and
:class:`~.network.DeliveryService`), ``security`` (TLS and authentication of the destinations), ``operator`` (``FolderSinkOp``, ``ErrorSinkOp``, ``NetworkSinkOp``).
"""
