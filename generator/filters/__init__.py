"""Filters that annotate candidates (one module each) and the pipeline that routes them."""

from generator.filters.base import Filter
from generator.filters.malformed import MalformedFilter
from generator.filters.pipeline import FilterPipeline, Routed

__all__ = ["Filter", "FilterPipeline", "MalformedFilter", "Routed"]
