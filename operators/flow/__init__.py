"""Run flow: the ledger of what a run accepted and settled, and the operator that ends a graph
once every message has drained.

Modules: ``ledger`` (:class:`~.ledger.RunLedger`: accounting and drain counts, no Holoscan),
``monitor`` (:class:`~.monitor.RunMonitor`, :class:`~.monitor.StopRequest`: when a run is over),
``operator`` (:class:`~.operator.RunMonitorOp`).
"""
