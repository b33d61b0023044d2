"""Glucoshare: a self-hostable platform for diabetes device data.

The package is a library first: the command line, the web app and the tests all build on the same
services. See ``docs/architecture.md`` for the layout and the one-way dependency rule.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
