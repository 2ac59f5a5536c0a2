
/*
parameters: [DATABASE_URL]
SELECT 1;
