with source as (

    select * from {{ source('raw', 'customers') }}

),

cleaned as (

    select
        cast(customer_id as bigint) as customer_id,
        cast(signup_date as date) as signup_date,
        cast(region_id as bigint) as region_id,
        lower(trim(plan)) as plan,
        lower(trim(email)) as email,
        nullif(trim(notes), '') as notes,
        cast(age as integer) as age,
        cast(churned as boolean) as churned

    from source

)

select * from cleaned
