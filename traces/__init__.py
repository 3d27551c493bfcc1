"""Trace contract v1 and everything that brings traces in: readers, validation, ingest, store, importers, synth."""
