"""``kalloc.to_dataframe(records)``: records as a pandas DataFrame (the extra ``kalloc[pandas]``).

One row per record, one column per scalar with the dotted names of the CSV
(``sim.throughput_ops_per_mcycle``, ``latency.malloc.p99``, ``costs.ipi_send``); the lists
(types, classes, cpus, the time series) stay in the records.  The same flattening as
``--format csv`` (kalloc.export.flatten), so a column means what the CSV's does.
"""

from __future__ import annotations

from kalloc.export import flatten


def to_dataframe(records: list):
    try:
        import pandas
    except ImportError:
        raise ValueError("to_dataframe needs pandas: pip install 'kalloc[pandas]'") from None
    return pandas.DataFrame([flatten(r) for r in records])
