"""Authorization policies used by the tests: one too slow, one broken."""

import time

from hookstream.ingest.authorization import AuthorizationRequest, Decision


def slow_policy(settings):
    def decide(request: AuthorizationRequest) -> Decision:
        time.sleep(2)
        return Decision("00", "slow")

    return decide


def broken_policy(settings):
    def decide(request: AuthorizationRequest) -> Decision:
        raise RuntimeError("policy bug")

    return decide
