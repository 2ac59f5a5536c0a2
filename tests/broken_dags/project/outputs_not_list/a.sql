/*
parameters: [DATABASE_URL]
outputs: {type: table, name: t}
*/
SELECT 1;
