"""Pure parsers of the export formats (one module per protocol) and their shared helpers."""
