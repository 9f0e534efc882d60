"""The Chroma server fixtures start a real server that clients reach, lose, and find again with the data kept."""

from __future__ import annotations

import socket
import uuid

import chromadb
import httpx
import pytest
from chromadb.config import Settings as ChromaSettings

from tests.fixtures_chroma import ChromaServer, ChromaServerError, free_port


def client_for(server: ChromaServer) -> chromadb.ClientAPI:
    return chromadb.HttpClient(
        host=server.host, port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_session_server_answers_heartbeat(chroma_server: ChromaServer) -> None:
    assert chroma_server.running
    assert client_for(chroma_server).heartbeat() > 0


def test_session_server_stores_and_queries(chroma_server: ChromaServer) -> None:
    client = client_for(chroma_server)
    # Unique name: the session server is shared by every test.
    name = f"fixture-{uuid.uuid4().hex[:8]}"
    coll = client.create_collection(name, embedding_function=None)
    coll.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["alpha", "beta"])
    got = coll.query(query_embeddings=[[0.9, 0.1]], n_results=1)
    assert got["ids"] == [["a"]]
    client.delete_collection(name)


def test_stop_then_restart_keeps_data(chroma_server_fresh: ChromaServer) -> None:
    server = chroma_server_fresh
    port, path = server.port, server.path
    client = client_for(server)
    coll = client.get_or_create_collection("survives", embedding_function=None)
    coll.add(ids=["x"], embeddings=[[0.1, 0.2, 0.3]], documents=["kept across restarts"], metadatas=[{"n": 1}])

    server.stop()
    assert not server.running
    # A new client refuses to be made; an existing one fails on its next call.
    with pytest.raises(ValueError, match="Could not connect"):
        client_for(server)
    with pytest.raises(httpx.ConnectError):
        client.heartbeat()
    with pytest.raises(httpx.ConnectError):
        coll.count()

    server.restart()
    assert (server.port, server.path) == (port, path)
    again = client_for(server).get_collection("survives", embedding_function=None)
    got = again.get(ids=["x"], include=["documents", "metadatas", "embeddings"])
    assert got["documents"] == ["kept across restarts"]
    assert got["metadatas"] == [{"n": 1}]
    assert [round(float(v), 5) for v in got["embeddings"][0]] == [0.1, 0.2, 0.3]
    # The client made before the outage works again too, as the app's long-lived client must.
    assert coll.count() == 1


def test_start_fails_clearly_when_port_taken(tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        server = ChromaServer(tmp_path / "db", port=taken)
        with pytest.raises(ChromaServerError, match="chroma run exited") as excinfo:
            server.start(timeout=15)
        assert not server.running
    # The server's own words are in the message, so a failed start explains itself.
    assert "not available" in str(excinfo.value)


def test_context_manager_stops_server(tmp_path) -> None:
    with ChromaServer(tmp_path / "db") as server:
        assert server.heartbeat_ok()
        url = server.url
    assert not server.running
    assert not server.heartbeat_ok()
    assert url.startswith("http://127.0.0.1:")
