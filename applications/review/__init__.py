"""burnscope review: the clinician review app and REST API (``burnscope web``).

FastAPI pages (worklist, image, body chart, review) and a REST API over the same cores as the
burn-triage graph. See README.md beside this file and docs/review.md.
"""
