"""Thin, lazily loaded adapters around the offline models (tags, faces, text embeddings).

One class per task, like Immich's ML service: the ingest pipeline only sees `Analyzer.run(images)`, so a model
can be swapped (or given as a local path) without touching the pipeline, and `model_id` is stored with each
result so a model change recomputes only that analyzer.
"""
