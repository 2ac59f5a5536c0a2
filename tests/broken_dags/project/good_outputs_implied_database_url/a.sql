/*
description: checks an output without listing DATABASE_URL
outputs: [{type: table, name: implied_url_output}]
*/
CREATE TABLE IF NOT EXISTS implied_url_output (x int);
