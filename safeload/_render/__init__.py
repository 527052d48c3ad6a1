"""Report renderers (text, JSON, SARIF): the only output code besides the CLI."""
