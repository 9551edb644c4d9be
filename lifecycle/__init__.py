"""burnscope.lifecycle: a model's life after BiomedCLIP — fine-tuning the image tower and the burn
head with DDP (``training``), and shipping the result as a MONAI Bundle (``monai_bundle``) or a
Triton model repository (``triton``).

It sits above the operators (it trains and packages the head they run, on data the DICOM loader
reads) and below the applications: ``common`` ← ``engines`` ← ``operators`` ← ``lifecycle`` ←
``applications``.
"""
