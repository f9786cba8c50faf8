"""Benchmarks: ``python -m benchmarks <scenario>`` runs the gateway side by side with its peers.

Benchmarks are not tests: they never run under ``make test``. Each scenario is one module that starts
real processes on 127.0.0.1, measures them with wrk and owns one section of ``benchmarks/RESULTS.md``.
"""
