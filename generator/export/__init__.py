"""Export: what humans approved, as TRL-shaped datasets with the record of how they were made.

selection (which items may leave) -> rows (TRL's conversational layouts) -> checks (structure
and length under a chat template) -> split (train/eval, near duplicates kept together) ->
writer (files, manifest, dataset card, provenance; all or nothing).
"""
