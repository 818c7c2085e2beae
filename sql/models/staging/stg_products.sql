with source as (

    select * from {{ source('raw', 'products') }}

),

cleaned as (

    select
        cast(product_id as bigint) as product_id,
        trim(name) as name,
        lower(trim(category)) as category,
        nullif(trim(description), '') as description,
        cast(price as double) as price

    from source

)

select * from cleaned
