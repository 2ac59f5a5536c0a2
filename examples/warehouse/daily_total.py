"""
description: Summarise the orders into daily_totals with the connection in context["conn"].
inputs: [load_orders.sql]
parameters: [DATABASE_URL]
outputs:
  - type: table
    name: daily_totals
    columns:
      - {name: day, datatype: date, nullable: false}
      - {name: total, datatype: numeric}
"""


def run(context):
    with context["conn"].cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS daily_totals (day date PRIMARY KEY, total numeric)")
        cur.execute(
            "INSERT INTO daily_totals SELECT placed_at::date, sum(amount) FROM orders"
            " GROUP BY 1 ON CONFLICT (day) DO UPDATE SET total = excluded.total"
        )
