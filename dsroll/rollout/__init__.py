"""The rollout executor: carries out a plan step by step and records every transition."""
