"""The central pipeline's decisions, run by its jobs from a sparse checkout of the infra repository.

Each job checks this repository out at the run's own commit (`ci/`, `components/__init__.py`,
`components/rules.py`) and runs `python3 -m ci.<module>` with its inputs in environment
variables. Standard library only: the runner's `python3` has nothing else.
"""
