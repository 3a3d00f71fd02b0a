"""Shared code of the parakeet NPU toolkit. Importing a module here has no side effects."""
