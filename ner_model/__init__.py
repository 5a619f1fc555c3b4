"""The default model: its architecture, the data it is trained and scored on, and its score."""
