/*
description: Create the orders table.
parameters: [DATABASE_URL]
*/
CREATE TABLE IF NOT EXISTS orders (
    id integer PRIMARY KEY,
    amount numeric(10, 2) NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now()
);
