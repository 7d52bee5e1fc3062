"""The ``gapfill`` command line: one module per concept, wired together in ``cli.app``.

It imports the library (``generator``), the workers and the review UI; none of them imports it.
"""
