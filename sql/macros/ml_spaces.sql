{#- Generated from spaces.yaml by `python -m pipeline dbt-sources` (and by every `run`): edits here are overwritten; change spaces.yaml instead. -#}
{% macro ml_spaces() %}
    {{ return({"customers": {"key": ["customer_id"], "neighbours": 10}, "order_items": {"key": ["item_id"], "neighbours": 0}, "orders": {"key": ["order_id"], "neighbours": 0}, "products": {"key": ["product_id"], "neighbours": 0}, "regions": {"key": ["region_id"], "neighbours": 0}, "support_tickets": {"key": ["ticket_id"], "neighbours": 0}}) }}
{% endmacro %}
