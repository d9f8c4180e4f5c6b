"""tlsflow: a passive TLS handshake analyzer. For every failed handshake in a capture: the step, the cause, the
evidence and the fix.

    >>> import tlsflow
    >>> frame = tlsflow.analyze("capture.pcapng")        # pandas DataFrame, one row per TCP connection
    >>> for record in tlsflow.iter_flows("big.pcap"): ... # the same rows as dicts, streamed
    >>> frame = tlsflow.analyze("big.pcap", jobs=0)       # one process per CPU core
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "analyze", "analyze_cluster", "iter_flows"]


def __getattr__(name: str):  # keep `import tlsflow` light: pandas loads only when a DataFrame is asked for
    if name in ("analyze", "iter_flows", "to_dataframe"):
        from tlsflow import api

        return getattr(api, name)
    if name == "analyze_cluster":  # needs the `cluster` extra (dask[distributed])
        from tlsflow.cluster import analyze_cluster

        return analyze_cluster
    raise AttributeError(name)
