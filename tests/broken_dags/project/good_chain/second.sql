/*
inputs: [first.yaml]
parameters: [DATABASE_URL]
*/
SELECT 1;
