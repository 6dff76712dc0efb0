"""Benchmarks of the delivery pipeline against raw baselines measured in the same run (``hookline bench``).

Not part of the test suite: ``tests/benchmarks`` only checks that the harness itself is correct.
"""
