"""Workflow and other generated documents, built from data."""
