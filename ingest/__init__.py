"""The ingestion engine: scan, extract, analyze, index."""
