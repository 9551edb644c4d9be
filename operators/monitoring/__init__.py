"""Health and metrics of the burn-triage service (:mod:`.core`), and the operator that settles
images as their reports are written (:mod:`.operator`)."""
