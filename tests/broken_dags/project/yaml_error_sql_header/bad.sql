/*
parameters: [DATABASE_URL]
inputs: [ok.yaml
*/
SELECT 1;
