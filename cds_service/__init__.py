"""CDS Hooks 2.0 decision support for Philadelphia-chromosome-positive ALL."""

__version__ = "0.1.0"
