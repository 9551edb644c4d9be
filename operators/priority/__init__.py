"""The emergency lane: when an image is STAT, and the queue that lets it overtake (:mod:`.core`)."""
