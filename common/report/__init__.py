"""Reports: results documents (accuracy, perf, checks, the smoke chain) as console tables,
CSV and Markdown, for people to read; the JSON is the record. Imports nothing of the toolkit
but its documents' shape.
"""
