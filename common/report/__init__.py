"""Reports: results documents (accuracy, perf, checks, the smoke chain) as console tables,
CSV, Markdown and a self-contained HTML page with matplotlib plots (`html`, `plots`), for people
to read; the JSON is the record. Beyond the documents' shape it imports only measure's pure
functions (WER counts, bootstrap intervals, word alignment).
"""
