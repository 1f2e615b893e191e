"""Performance benchmark of the exporter against the simulator (issue 9).

Run with `python -m bench --sizes 100,1000,5000`. It is deliberately not part of the unit tests:
a full run takes minutes and its numbers depend on the machine.
"""
