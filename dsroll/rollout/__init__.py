"""Rollouts: pure decisions (``decide``, ``view``, ``state``, ``health``) and the modules that
observe, ask them, carry the answer out and record it (``executor``, ``podswap``, ``handover``)."""
