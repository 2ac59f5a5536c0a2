# inputs: [third.py]
echo ok
