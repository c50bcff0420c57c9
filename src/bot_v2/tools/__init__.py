"""Operator tools behind ``scripts/``: the dashboard, the production preflight and the core health sweep.

The scripts only parse arguments and call into here; everything that can be judged without I/O (check
verdicts, event tailing, dashboard frames) is a pure function with its own unit tests.
"""
