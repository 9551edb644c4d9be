"""burnscope.applications: Holoscan applications (one folder each) and the ``burnscope`` CLI."""
