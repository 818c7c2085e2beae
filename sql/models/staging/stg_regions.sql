with source as (

    select * from {{ source('raw', 'regions') }}

),

cleaned as (

    select
        cast(region_id as bigint) as region_id,
        trim(name) as name,
        upper(trim(country)) as country,
        trim(timezone) as timezone

    from source

)

select * from cleaned
