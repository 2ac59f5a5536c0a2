/*
description: forgot the parameter
*/
SELECT 1;
