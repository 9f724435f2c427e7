"""The popular products: what a customer without a personal list is shown, everywhere.

One ranking, read by the published `popular_products` export (the serving API's fallback,
tessera/publish/published.py) and by rendered messages for customers without personalisation
consent (tessera/decisioning/render.py): active products by distinct buyers, ties by distinct
customers with any interaction, then by distinct browsers who viewed or carted them (`visitors`:
how an anonymous clickstream ranks its catalogue), then product id, with the recommender's
diversity cap per category. Customers who asked for erasure are not counted.
"""

from tessera.privacy.erasure import NOT_ERASED
from tessera.publish.queries import load

# tessera/publish/sql/popular_products.sql, with the models' erasure filter on the interactions
POPULAR_PRODUCTS_SQL = load("popular_products").format(not_erased=NOT_ERASED)
