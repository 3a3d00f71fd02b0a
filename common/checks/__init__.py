"""The environment dry-run: is this machine ready to run the model? PASS/WARN/FAIL checks in
seconds, no model load. May import the model, device and inputs layers.
"""
