"""Maple's shared package: settings, topic contracts, client factories, logging, metrics and the CLI.

Stage packages (ingest, processors, topologies, sinks) import from here and never from each other,
except topologies, which wires processors into Faust agents.
"""

__version__ = "0.1.0"
