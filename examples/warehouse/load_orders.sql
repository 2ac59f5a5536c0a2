/*
description: Load a few orders, then check the table.
inputs: [create_orders.sql]
parameters: [DATABASE_URL]
timeout: 60
outputs:
  - type: table
    name: orders
    columns:
      - {name: id, datatype: int, nullable: false}
      - {name: amount, datatype: numeric, nullable: false}
      - {name: placed_at, datatype: timestamptz}
    validation_queries:
      - SELECT id FROM orders WHERE amount < 0
*/
INSERT INTO orders (id, amount) VALUES (1, 9.99), (2, 25.00), (3, 4.50)
ON CONFLICT (id) DO NOTHING;
