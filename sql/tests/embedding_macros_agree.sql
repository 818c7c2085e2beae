{#- The embedding macros against what the pipeline wrote (rows returned are failures): the
    mart's similar customers (similar_to) are nearest()'s, an exact scan (more rows asked than
    the neighbours table keeps) finds rows at least as similar as the index, and
    embedding_distance() is 1 - the stored similarity. -#}
with mart as (

    select customer_id, similar_customers
    from {{ ref('customer_churn_risk') }}
    where similar_customers is not null
    order by customer_id
    limit 25

),

checked as (

    select
        m.customer_id,
        m.similar_customers,
        (
            select list(customer_id order by rank)
            from {{ nearest('customers', 'm.customer_id', 5) }}
        ) as from_nearest,
        (select max(similarity) from {{ nearest('customers', 'm.customer_id', 5) }}) as best_indexed,
        (select max(similarity) from {{ nearest('customers', 'm.customer_id', 11) }}) as best_exact,
        (select count(*) from {{ nearest('customers', 'm.customer_id', 11) }}) as exact_rows,
        (
            select max(abs({{ embedding_distance('a.embedding', 'b.embedding') }} - (1 - n.similarity)))
            from {{ source('ml', 'customers_neighbours') }} as n
            inner join {{ source('ml', 'customers_embeddings') }} as a
                on n.customer_id = a.customer_id
            inner join {{ source('ml', 'customers_embeddings') }} as b
                on n.neighbour_customer_id = b.customer_id
            where n.customer_id = m.customer_id
        ) as distance_error

    from mart as m

)

select *
from checked
where from_nearest is distinct from similar_customers
    or best_exact < best_indexed - 1e-5
    or exact_rows <> 11
    or distance_error > 1e-4
