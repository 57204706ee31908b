"""The photos and their tables: decoding to pixels as the app does, CSV rows, grouped splits, the logo."""
