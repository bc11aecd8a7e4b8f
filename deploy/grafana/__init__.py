"""Grafana provisioning and the generator of its dashboards (dashboards.py)."""
