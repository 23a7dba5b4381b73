"""Node configuration: one YAML file per node, validated once at start."""

from edge.config.loader import ConfigError, load_config, parse_config
from edge.config.model import NodeConfig

__all__ = ["ConfigError", "NodeConfig", "load_config", "parse_config"]
