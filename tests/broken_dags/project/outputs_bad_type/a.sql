/*
parameters: [DATABASE_URL]
outputs:
  - type: view
    name: v
*/
SELECT 1;
