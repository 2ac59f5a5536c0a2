/*
parameters: [DATABASE_URL]
outputs:
  - type: table
    name: t
    checks: []
*/
SELECT 1;
