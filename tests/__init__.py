"""The toolkit's tests (a package, so that `tests.*` imports never resolve to another installed `tests`)."""
