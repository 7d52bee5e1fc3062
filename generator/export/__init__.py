"""Export: what humans approved, as TRL-shaped datasets with the record of how they were made.

selection (which items may leave) -> rows (TRL's conversational layouts) -> prepare and checks
(structure and length under a chat template) -> split (train/eval, near duplicates kept
together) -> writer (all or nothing: the steps in order), which writes through files (data,
provenance, exclusions, hashes, the marks on the exported items, the rename into place), reports
(the stage's eval and safety reports) and manifest_writer (manifest.json and the dataset card;
their content in manifest). target says where an export may be written: a UI export by name
under the export root, and ``--overwrite`` only over an earlier export.
"""
