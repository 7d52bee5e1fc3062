"""Filters that annotate candidates (one module each) and the pipeline that routes them.

Import from the modules (``generator.filters.pipeline``...): this package stays import-free so
``generator.schema`` can use ``generator.filters.settings`` without a cycle.
"""
