"""``python -m burnscope.applications.cli`` runs the ``burnscope`` command line."""

import sys

from burnscope.applications.cli import main

sys.exit(main())
