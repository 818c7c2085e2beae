{#- One row per customer: churn risk from the predictor plus the 5 nearest customers in
    the `customers` embedding space (exact cosine similarity). -#}
with customers as (

    select * from {{ ref('stg_customers') }}

),

regions as (

    select * from {{ ref('stg_regions') }}

),

predictions as (

    select * from {{ source('ml', 'customers__churned_predictions') }}

),

embeddings as (

    select customer_id, embedding from {{ source('ml', 'customers_embeddings') }}

),

pair_similarity as (

    select
        a.customer_id,
        b.customer_id as similar_customer_id,
        array_cosine_similarity(a.embedding, b.embedding) as similarity

    from embeddings as a
    inner join embeddings as b
        on a.customer_id <> b.customer_id

),

nearest_five as (

    select * from pair_similarity
    qualify row_number() over (
        partition by customer_id
        order by similarity desc, similar_customer_id
    ) <= 5

),

similar_customers as (

    select
        customer_id,
        list(similar_customer_id order by similarity desc, similar_customer_id)
            as similar_customers

    from nearest_five
    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.plan,
        regions.name as region,
        map_extract_value(predictions.probabilities, 'true') as churn_probability,
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
