"""Change-data capture: keep MySQL/MariaDB and PostgreSQL tables in sync through the bus (``sluice sync``).

- :mod:`sluice.cdc.events`: the change event on the bus (versioned, documented in ``docs/cdc.md``);
- :mod:`sluice.cdc.base`: the capture and apply seams; :mod:`sluice.cdc.plugins`: the built-in plugins;
- :mod:`sluice.cdc.config`: the ``syncs:`` section of ``sluice.yaml``;
- :mod:`sluice.cdc.runtime`: capture -> bus -> apply, positions, conflicts, status;
- :mod:`sluice.cdc.partitions`: one table's keys over several Kafka partitions (``partitions: N``), applied in
  parallel by :mod:`sluice.cdc.apply_partitioned`, positions per partition in :mod:`sluice.cdc.apply_positions`.
"""
