"""burnscope.operators: reusable Holoscan operators for burn imaging.

Each operator lives in its own sub-package with two modules:

* ``core``: a plain class or function with no Holoscan import. Hospital integrators embed
  it in their own code; the tests exercise it without a graph.
* ``operator``: a thin Holoscan ``Operator`` that declares named ports and moves messages
  (``burnscope.common.messages``) in ``compute()``.

Holoscan itself is imported only through :mod:`burnscope.operators.holoscan_runtime`, which
makes the CUDA runtime library loadable first (so Holoscan works on machines without a GPU).
"""
