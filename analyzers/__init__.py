"""Folds a connection's TLS events and TCP facts into one summary, and turns a summary into a verdict."""
