with source as (

    select * from {{ source('raw', 'orders') }}

),

cleaned as (

    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,
        cast(ordered_at as timestamp) as ordered_at,
        lower(trim(status)) as status,
        lower(trim(channel)) as channel,
        cast(shipping_days as integer) as shipping_days,
        cast(total_amount as double) as total_amount

    from source

)

select * from cleaned
