# timeout: 0
echo hi
