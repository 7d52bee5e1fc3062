"""Prompt templates (Jinja2) and their defaults: data, not code. Read through importlib.resources
so they ship inside the installed distribution."""
