"""RQ workers for gapfill: job functions and the worker that loads its LLM backend once."""
