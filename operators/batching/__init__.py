"""Dynamic batching in front of the image tower (:mod:`.core`, Holoscan wrappers in :mod:`.operator`)."""
