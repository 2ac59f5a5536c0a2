#!/bin/bash
# description: fine
# timeout: : 3
#   - x
echo hi
