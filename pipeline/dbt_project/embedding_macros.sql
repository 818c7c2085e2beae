{#- Similar rows from the embedding spaces the pipeline writes, for any model:

    {{ nearest(space, key, k) }}        the k rows most similar to the row with this key
                                        (a SQL expression: 42, '''abc''', or a column of an
                                        outer query such as 'c.customer_id'): a subquery of
                                        (<key>, rank, similarity)
    {{ similar_to(space, k) }}          every row with its k most similar rows: a subquery of
                                        (<key>, similar_<key>, rank, similarity) to join on <key>
    {{ embedding_distance(a, b) }}      cosine distance (1 - cosine similarity) of two embeddings

    Spaces, keys and how many neighbours each keeps come from ml_spaces(), generated from
    spaces.yaml with the `ml` source. This file is written into the dbt project by
    `python -m pipeline dbt-sources` (and every run) from pipeline/dbt_project/: edit it there. -#}

{% macro ml_space(space) %}
    {%- set spaces = ml_spaces() -%}
    {%- if space not in spaces -%}
        {{ exceptions.raise_compiler_error(
            "unknown space '" ~ space ~ "' (spaces.yaml has " ~ (spaces.keys() | sort | join(", "))
            ~ ") -> add it to spaces.yaml and run python -m pipeline dbt-sources") }}
    {%- endif -%}
    {%- if spaces[space].key | length != 1 -%}
        {{ exceptions.raise_compiler_error(
            "space '" ~ space ~ "' is keyed by " ~ (spaces[space].key | join(", "))
            ~ ": nearest and similar_to need a space keyed by one column") }}
    {%- endif -%}
    {{ return(spaces[space]) }}
{% endmacro %}


{% macro embedding_distance(a, b) -%}
    (1 - list_cosine_similarity(({{ a }})::float[], ({{ b }})::float[]))
{%- endmacro %}


{% macro nearest(space, key, k=10) -%}
    {%- set info = ml_space(space) -%}
    {%- set key_column = adapter.quote(info.key[0]) -%}
    {%- if info.neighbours >= k -%}
    (
        select
            {{ adapter.quote('neighbour_' ~ info.key[0]) }} as {{ key_column }},
            rank,
            similarity::double as similarity
        from {{ source('ml', space ~ '_neighbours') }}
        where {{ key_column }} = {{ key }} and rank <= {{ k }}
    )
    {%- else -%}
    {#- more than the neighbours table keeps: an exact scan of the embeddings -#}
    (
        select
            e.{{ key_column }},
            row_number() over (order by
                list_cosine_similarity(e.embedding::float[], q.embedding::float[]) desc,
                e.{{ key_column }})::integer as rank,
            list_cosine_similarity(e.embedding::float[], q.embedding::float[]) as similarity
        from {{ source('ml', space ~ '_embeddings') }} as e,
            (
                select embedding from {{ source('ml', space ~ '_embeddings') }}
                where {{ key_column }} = {{ key }}
            ) as q
        where e.{{ key_column }} <> {{ key }}
        qualify rank <= {{ k }}
    )
    {%- endif -%}
{%- endmacro %}


{% macro similar_to(space, k=5) -%}
    {%- set info = ml_space(space) -%}
    {%- if info.neighbours < k -%}
        {{ exceptions.raise_compiler_error(
            "similar_to('" ~ space ~ "', " ~ k ~ "): space '" ~ space ~ "' keeps "
            ~ info.neighbours ~ " neighbours per row -> set neighbours: " ~ k
            ~ " (or more) for it in spaces.yaml and run the pipeline") }}
    {%- endif -%}
    {%- set key_column = adapter.quote(info.key[0]) -%}
    (
        select
            {{ key_column }},
            {{ adapter.quote('neighbour_' ~ info.key[0]) }} as {{ adapter.quote('similar_' ~ info.key[0]) }},
            rank,
            similarity::double as similarity
        from {{ source('ml', space ~ '_neighbours') }}
        where rank <= {{ k }}
    )
{%- endmacro %}
