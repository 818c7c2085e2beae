{#- One row per customer: churn risk from the predictor plus the 5 nearest customers in
    the `customers` embedding space, read through similar_to() from the neighbours table the
    pipeline keeps (no join of every pair of customers). -#}
with customers as (

    select * from {{ ref('stg_customers') }}

),

regions as (

    select * from {{ ref('stg_regions') }}

),

predictions as (

    select * from {{ source('ml', 'customers__churned_predictions') }}

),

similar_customers as (

    select
        customer_id,
        list(similar_customer_id order by rank) as similar_customers

    from {{ similar_to('customers', 5) }}
    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.plan,
        regions.name as region,
        -- a MAP in a DuckDB file or a lake, JSON text in PostgreSQL: read either as JSON
        (predictions.probabilities::json ->> 'true')::double as churn_probability,
        predictions.prediction = 'true' as predicted_churn,
        predictions.confidence,
        predictions.ood_sigma,
        similar_customers.similar_customers

    from customers
    left join regions
        on customers.region_id = regions.region_id
    left join predictions
        on customers.customer_id = predictions.customer_id
    left join similar_customers
        on customers.customer_id = similar_customers.customer_id

)

select * from final
