"""Reading a spec and a series against each other.

Entry points: `drift.compare` (`gen-series drift`: the spec walked on two
releases); `explain.explain` (`gen-series explain`: a patch line <-> its
spec item and template line).
"""
