"""Describing a warehouse the project has never seen: its tables, keys and relations, found
in the catalog and the data, written as a spec (`python -m pipeline init`)."""
