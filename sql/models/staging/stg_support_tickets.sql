with source as (

    select * from {{ source('raw', 'support_tickets') }}

),

cleaned as (

    select
        cast(ticket_id as bigint) as ticket_id,
        cast(customer_id as bigint) as customer_id,
        cast(opened_at as timestamp) as opened_at,
        lower(trim(channel)) as channel,
        lower(trim(priority)) as priority,
        nullif(trim(body), '') as body

    from source

)

select * from cleaned
