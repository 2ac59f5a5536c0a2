# outputs: [{type: table, name: t}]
echo hi
