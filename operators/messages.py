"""Deprecated location of the message types: they now live in :mod:`burnscope.common.messages`.

Kept for one release so that integrators' imports keep working (docs/architecture.md).
"""

from burnscope.common.messages import *  # noqa: F401,F403
