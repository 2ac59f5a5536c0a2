# parameters: [1BAD-NAME]
echo hi
