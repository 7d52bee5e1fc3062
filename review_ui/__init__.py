"""The Streamlit review UI: it imports the library (generator), never the reverse."""
