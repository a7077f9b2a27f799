"""Stage 2b, wire: Faust apps whose agents read topics, call processors on each batch, and write topics.

Not built yet: see the logs/metrics and traces issues. May import `processors` and `maple`.
"""
