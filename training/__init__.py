"""Training of the project's default Chinese NER model (LAC BiGRU + CRF on MSRA). ``python -m training --help``."""
