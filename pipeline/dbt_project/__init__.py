"""The dbt project follows the spec: the `ml` source, the spaces the embedding macros know,
and the macros themselves, written into any dbt project (`python -m pipeline dbt-sources`)."""
