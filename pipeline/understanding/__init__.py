"""Understanding the data before anything trains: `profiling` and `detection` (what each
column is), `joins` and `validation` (keys and relations), `distribution_shift`, and the
quality reports (`data_quality`, `quality_sql`, `quality_page`).
"""
