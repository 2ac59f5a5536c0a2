/*
parameters: [DATABASE_URL]
outputs:
  - type: table
    name: t
    columns:
      - {name: id, nullable: maybe}
*/
SELECT 1;
