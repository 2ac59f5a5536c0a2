/*
type: sql
description: The day's orders (a task whose name starts with an underscore)
outputs:
  - type: table
    name: orders
    columns:
      - name: id
        datatype: integer
      - name: amount
        datatype: integer
*/
CREATE TABLE IF NOT EXISTS orders (id integer NOT NULL, amount integer NOT NULL);
INSERT INTO orders VALUES (1, 5), (2, 7);
