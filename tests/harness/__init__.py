"""Test harness: stand-ins for what this machine cannot run for real, strict like the real thing.

- `github_api`: a local GitHub REST API on 127.0.0.1 that records every request.
- `workflow`: runs a rendered workflow job's `run:` steps with real bash, as a runner would.
"""
