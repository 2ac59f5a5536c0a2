/*
type: big_query_sql
*/
SELECT 1;
