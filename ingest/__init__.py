"""The HTTP receiver: authenticate, validate, route, publish durably, answer in time."""
