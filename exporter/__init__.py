"""Prometheus exporter for Huawei Cloud ModelArts inference services."""

__version__ = "0.1.0"
