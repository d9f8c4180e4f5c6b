"""Recorder of the labelled capture corpus: real servers and clients on loopback, recorded with tcpdump."""
