/* just a comment about this query */
SELECT 1;
