"""The one Milvus client wrapper: Milvus Lite file by default, a Milvus server by URI.

Opening Milvus Lite costs about a second and a few hundred MB, so the client is created lazily and only by
code that needs vectors (analyzers, search, health checks).
"""

from __future__ import annotations

from functools import cached_property


class VectorStore:
    """Thin adapter around pymilvus' MilvusClient."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @cached_property
    def client(self):  # type: ignore[no-untyped-def]
        from pymilvus import MilvusClient

        return MilvusClient(self.uri)

    def health(self) -> tuple[bool, str]:
        """(reachable, detail) without raising."""
        try:
            collections = self.client.list_collections()
        except Exception as error:  # any client/server failure means "not reachable"
            return False, f"{type(error).__name__}: {error}"
        return True, f"{len(collections)} collections"

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]
