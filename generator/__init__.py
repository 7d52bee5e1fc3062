"""gapfill: find coverage gaps in a fine-tuning dataset, generate candidates for them, filter,
review and export what humans approved."""

__version__ = "0.1.0"
