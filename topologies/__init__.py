"""Stage 2b, wire: Faust apps whose agents read topics, call processors on each batch, and write topics.

May import `processors` and `maple`.
"""
