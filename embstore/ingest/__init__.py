"""The ingest pipeline: readers (``readers``), ids and hashes (``hashing``), and the runner (``runner``)."""
