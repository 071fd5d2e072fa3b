"""Data-quality checks declared on objects (``checks:``), run where the output is: docs/checks.md.

``settings.py`` (the declaration and each type's typed options), ``plugins.py`` (the built-in ``check``
plugins), ``builtin.py`` (what each type's failing rows are, as SQL), ``compile.py`` (one query per check
in the place's dialect, by sqlglot), ``places.py`` (DuckDB over the lake, PostgreSQL, Spark), ``run.py``
(an object's checks after its write: results, events, metrics), ``store.py`` (where results are kept),
``read.py`` (the ``checks:`` list of sluice.yaml, checked key by key).
"""
