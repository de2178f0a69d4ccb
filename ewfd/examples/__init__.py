"""Example apps, importable after install.

``ewfd.examples.demo:engine`` is the default app of ``ewfd run``.
"""
