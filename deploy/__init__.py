"""Deployment tooling: contract checks, the Helm chart check, image scripts."""
