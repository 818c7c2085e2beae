with source as (

    select * from {{ source('raw', 'order_items') }}

),

cleaned as (

    select
        cast(item_id as bigint) as item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as double) as unit_price,
        cast(discount as double) as discount

    from source

)

select * from cleaned
