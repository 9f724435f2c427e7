-- The first 100 of the popular products (tessera/publish/popular.py), the serving API's fallback
select * from ({popular_products}) order by rank limit 100
