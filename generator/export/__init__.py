"""Export: what humans approved, as TRL-shaped datasets with the record of how they were made.

selection (which items may leave) -> rows (TRL's conversational layouts) -> prepare and checks
(structure and length under a chat template) -> split (train/eval, near duplicates kept
together) -> writer (all or nothing: the steps in order), which writes through files (data,
provenance, exclusions, hashes, the rename into place), reports (the stage's eval and safety
reports) and manifest_writer (manifest.json and the dataset card; their content in manifest).
"""
