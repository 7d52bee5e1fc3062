"""Stage-specific evaluation of a dataset: the eval and safety reports an export carries.

metrics (one function per section: format, refusals, diversity, contamination, safety,
preference) -> report (the JSON model with stable keys, the Markdown report, charts) -> runner
(a file or an export's rows in, the report files out).
"""
