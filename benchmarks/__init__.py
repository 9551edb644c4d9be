"""burnscope's benchmarks, one module per benchmark (HoloHub style).

Each prints a table and returns (and can write) JSON; none is a timed test. Results live under
``docs/benchmarks/`` with the command that produced them and the machine.

=================  ==============================================  =======================================
module             measures                                        run it with
=================  ==============================================  =======================================
``engines``        image tower per backend × precision × batch:    ``burnscope bench engines``
                   latency, images/s, memory, fidelity vs fp32
``burn_triage``    the burn-triage graph headless vs the same      ``burnscope bench burn-triage -i DIR``
                   cores called directly: latency, images/s, RSS
``service_load``   the service (``burnscope serve``'s graph) under   ``burnscope bench burn-triage --rate R``,
                   open-loop Poisson load: STAT/routine latency,   ``python -m burnscope.benchmarks.service_load``
                   images/s, queue depths; capacity and targets
``batching``       dynamic batching: throughput and p99 per        ``python -m burnscope.benchmarks.batching``
                   max_delay_ms × max_batch (table + PNG)
``report_pool``    images/s, reporting in worker processes vs in   ``python -m burnscope.benchmarks.report_pool``
                   the graph, all six formats
``decode``         DICOM loader images/s: serial, threads,         ``python -m burnscope.benchmarks.decode``
                   processes, nvImageCodec
``preprocess``     BiomedCLIP transform: NumPy, CuPy, open_clip    ``python -m burnscope.benchmarks.preprocess``
``distributed_``   bytes per image on each link of the fragments   ``sudo python -m burnscope.benchmarks.distributed_links``
``links``          (driver + worker on a private loopback)
``gpu``            engines + preprocessing on a GPU, with the      ``python -m burnscope.benchmarks.gpu``
                   H100 targets
``cpu_share``      per-image CPU time of everything but the       ``burnscope bench cpu-share -i DIR``
                   image tower (a zero-cost stand-in), per stage
                   and report format; ``--gpu``: the GPU path's
                   per-stage breakdown
``scaled_decode``  DCT-domain scaled JPEG decoding vs full:       ``burnscope bench scaled-decode -i DIR``
                   speed-up, embedding cosine
``clinical_photos`` 12 MP JPEG (+ JPEG 2000) photographs as DICOM ``python -m burnscope.benchmarks.clinical_photos OUT``
                   into a folder (inputs, not a benchmark)
``tower_options``  torch.compile + CUDA graphs, FP8 (torchao):    ``python -m burnscope.benchmarks.tower_options --out DIR``
                   img/s and cosine vs fp32 (GPU)
``gpu_targets``    a GPU suite run against DESIGN.md's targets    ``python -m burnscope.benchmarks.gpu_targets OUT``
``gpu_suite.sh``   install, GPU tests and every GPU benchmark      ``bash benchmarks/gpu_suite.sh OUT`` (checkout)
=================  ==============================================  =======================================

Every input is an argument. Defaults are things an installed wheel has (the sample
photographs shipped with :mod:`burnscope.operators.preprocess.calibration`, pydicom's bundled test files,
images generated on the fly), never files of a source checkout.
"""
