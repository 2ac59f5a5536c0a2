/*
parameters: [DATABASE_URL]
*/

