"""The closed loop: triggers train challengers, and a challenger rolls out by itself.

- ``policy``: what a model's plan says (``rollout:`` steps and thresholds, ``triggers:``).
- ``analysis``: the evidence of one step (canary against stable over its window) and its verdict.
- ``state``: rollouts and loop events in the prediction log's database (what survives a restart).
- ``rollout``: the route a rollout's state asks for, and starting, deciding and aborting one.
- ``lease``: the right to drive the loop, held by one worker of the fleet at a time.
- ``driver``: the loop itself, run by whichever worker holds the lease.
- ``api``: the admin routes' side (start, abort, status); ``demo``: traffic with feedback, to try it.
"""
