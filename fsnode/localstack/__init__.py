"""The local stack: the whole system on one machine, moto standing in for AWS."""
