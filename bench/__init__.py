"""Throughput benchmarks, each printed beside a baseline measured in the same run.

Run ``python -m bench`` (or ``make bench``); ``python -m bench --help`` lists the options.
"""
